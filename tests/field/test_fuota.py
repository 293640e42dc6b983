"""``citynode fuota keygen`` / ``build``: signed update packages (gateway.field.fuota).

A package holds the files that differ between two app trees and the deletions, with a manifest naming
both versions and every file's SHA-256, signed with Ed25519 (docs/design/fuota.md). The node's side of
the check runs on MicroPython in tests/firmware/fuota/test_fuota_package.py.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.field import fuota


def _tree(root: Path, version: str | None, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    if version:
        (root / "VERSION").write_text(version + "\n")
    return root


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    base = _tree(tmp_path / "v1", "0.1.0", {"lib/citynode/app.mpy": b"A1", "lib/citynode/codec.mpy": b"C1",
                                            "lib/citynode/old.mpy": b"O1"})
    target = _tree(tmp_path / "v2", "0.2.0", {"lib/citynode/app.mpy": b"A1", "lib/citynode/codec.mpy": b"C2",
                                              "lib/citynode/new.mpy": b"N2"})
    return base, target


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path, capsys) -> None:
    assert main(["fuota", "keygen", "--out", str(tmp_path / "city")]) == 0
    key, pub = tmp_path / "city.key", tmp_path / "city.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(bytes.fromhex(pub.read_text().strip())) == 32
    assert pub.read_text().strip() in capsys.readouterr().out


def test_keygen_never_overwrites_a_key(tmp_path: Path, capsys) -> None:
    assert main(["fuota", "keygen", "--out", str(tmp_path / "city")]) == 0
    before = (tmp_path / "city.key").read_bytes()
    assert main(["fuota", "keygen", "--out", str(tmp_path / "city")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to overwrite" in err[0]
    assert (tmp_path / "city.key").read_bytes() == before


def test_build_packages_the_changed_and_new_files_and_the_deletions(tmp_path: Path, trees, capsys) -> None:
    base, target = trees
    assert main(["fuota", "keygen", "--out", str(tmp_path / "k")]) == 0
    out = tmp_path / "app.cnup"
    assert main(["fuota", "build", "--from", str(base), "--to", str(target), "--key", str(tmp_path / "k.key"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0.1.0 -> 0.2.0, partial, 2 files, 1 deleted" in printed
    # a node whose factory app is frozen refuses a partial package: the tool says so
    assert "frozen refuses it (update: refused_other): build its first update with --full" in printed
    data = out.read_bytes()
    pkg = fuota.read_package(data, bytes.fromhex((tmp_path / "k.pub").read_text()))
    assert (pkg.base, pkg.target) == ("0.1.0", "0.2.0")
    assert pkg.files == {"lib/citynode/codec.mpy": b"C2", "lib/citynode/new.mpy": b"N2"}
    assert pkg.delete == ("lib/citynode/old.mpy",)
    # the layout: magic, format, manifest length, compact sorted JSON, 64-byte signature, the files
    n = int.from_bytes(data[5:7], "little")
    assert data[:5] == b"CNUP\x01"
    manifest = json.loads(data[7:7 + n])
    assert manifest["files"][0] == ["lib/citynode/codec.mpy", 2, hashlib.sha256(b"C2").hexdigest()]
    assert data[7 + n + 64:] == b"C2N2"


@pytest.mark.parametrize(("where", "error"), [
    ("file", "lib/citynode/codec.mpy: content does not match its hash"),
    ("manifest", "bad signature"),
    ("signature", "bad signature"),
])
def test_a_tampered_package_is_refused(trees, where: str, error: str) -> None:
    base, target = trees
    pair = fuota.generate_keypair()
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = bytearray(fuota.build_package(base, target, load_pem_private_key(pair.private_pem, None)))
    n = int.from_bytes(data[5:7], "little")
    data[{"file": 7 + n + 64, "manifest": 20, "signature": 7 + n + 3}[where]] ^= 0x01
    with pytest.raises(fuota.PackageError, match=error):
        fuota.read_package(bytes(data), pair.public_raw)


def test_a_package_signed_by_another_key_is_refused(trees) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    base, target = trees
    signer, other = fuota.generate_keypair(), fuota.generate_keypair()
    data = fuota.build_package(base, target, load_pem_private_key(signer.private_pem, None))
    with pytest.raises(fuota.PackageError, match="bad signature"):
        fuota.read_package(data, other.public_raw)


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "{tmp}/nowhere"], "nowhere: not a directory"),
    (["--key", "{tmp}/v1/VERSION"], "not an unencrypted PEM private key"),
    (["--base-version", "0.2.0"], "base and target are both version 0.2.0"),
])
def test_build_answers_bad_input_with_one_line_and_exit_2(tmp_path: Path, trees, capsys, args, message) -> None:
    base, target = trees
    main(["fuota", "keygen", "--out", str(tmp_path / "k")])
    argv = {"--from": str(base), "--to": str(target), "--key": str(tmp_path / "k.key"), "--out": str(tmp_path / "p")}
    for flag, value in zip(args[::2], args[1::2]):
        argv[flag] = value.format(tmp=tmp_path)
    capsys.readouterr()
    assert main(["fuota", "build", *[x for kv in argv.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "p").exists()


def test_a_tree_without_a_version_needs_one_on_the_command_line(tmp_path: Path, capsys) -> None:
    base = _tree(tmp_path / "a", None, {"x.mpy": b"1"})
    target = _tree(tmp_path / "b", "0.2.0", {"x.mpy": b"2"})
    main(["fuota", "keygen", "--out", str(tmp_path / "k")])
    common = ["--to", str(target), "--key", str(tmp_path / "k.key"), "--out", str(tmp_path / "p")]
    assert main(["fuota", "build", "--from", str(base), *common]) == 2
    assert "no VERSION file" in capsys.readouterr().err
    assert main(["fuota", "build", "--from", str(base), "--base-version", "0.1.0", *common]) == 0


@pytest.mark.parametrize("base_args", [["--from", "{base}"], ["--base-version", "0.1.0"]])
def test_a_full_package_carries_the_whole_target_tree(tmp_path: Path, trees, capsys, base_args) -> None:
    # for a node whose factory app is frozen into its image: nothing of the running tree can be copied
    base, target = trees
    main(["fuota", "keygen", "--out", str(tmp_path / "k")])
    out = tmp_path / "app.cnup"
    argv = [a.format(base=base) for a in base_args]
    assert main(["fuota", "build", *argv, "--full", "--to", str(target), "--key", str(tmp_path / "k.key"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0.1.0 -> 0.2.0, full, 3 files, 0 deleted" in printed and "--full" not in printed
    pkg = fuota.read_package(out.read_bytes(), bytes.fromhex((tmp_path / "k.pub").read_text()))
    assert pkg.full and pkg.manifest["full"] is True
    assert pkg.files == {"lib/citynode/app.mpy": b"A1", "lib/citynode/codec.mpy": b"C2", "lib/citynode/new.mpy": b"N2"}
    assert pkg.delete == ()


def test_build_without_a_base_needs_full_and_a_base_version(tmp_path: Path, trees, capsys) -> None:
    _, target = trees
    main(["fuota", "keygen", "--out", str(tmp_path / "k")])
    common = ["--to", str(target), "--key", str(tmp_path / "k.key"), "--out", str(tmp_path / "p")]
    capsys.readouterr()
    assert main(["fuota", "build", "--full", *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give --from, or --full with --base-version" in err[0]
    assert not (tmp_path / "p").exists()
