"""`citynode provision` makes a fleet ready for FUOTA, against the ChirpStack API simulator over gRPC.

Three things a FUOTA deployment needs and provisioning sets (docs/design/fuota.md, "Multicast keys"):

* a GenAppKey per device, in ChirpStack's device keys (``gen_app_key``: ChirpStack derives a LoRaWAN
  1.0.x device's multicast keys from it) and the same one in the node's bundle; kept on a rerun like
  the AppKey;
* the update key's public half (``citynode fuota keygen``'s PREFIX.pub, given as ``--update-key``) in
  every bundle as ``fuota_pub``;
* device profiles with ``app_layer_params`` (TS003/TS004/TS005 v2 on fPorts 202/201/200), which
  ``citynode fuota deploy`` requires; and still Class A (no ``supports_class_c``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from chirpstack_api import api

from gateway.cli import main
from gateway.field import fuota
from gateway.field.flash import config_from_bundle
from gateway.field.provision import profile_name  # imported here, under the checkout's CITYNODE_ROOT
from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

DATA = Path(__file__).parent / "data"
TOKEN = "test-api-token"
PLACEHOLDER_CODEC = "// placeholder codec for tests\nfunction decodeUplink(input) { return {data: {}}; }\n"
EUIS = [f"70b3d57ed000000{i}" for i in range(1, 5)]
ZERO = "0" * 32


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away CITYNODE_ROOT with a placeholder ChirpStack codec; the token in the environment."""
    root = tmp_path / "root"
    (root / "codecs" / "chirpstack").mkdir(parents=True)
    (root / "codecs" / "chirpstack" / "citynode.js").write_text(PLACEHOLDER_CODEC)
    monkeypatch.setenv("CITYNODE_ROOT", str(root))
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_TOKEN", TOKEN)
    monkeypatch.delenv("CITYNODE_CHIRPSTACK_TOKEN_FILE", raising=False)
    monkeypatch.delenv("CITYNODE_FUOTA_UPDATE_KEY", raising=False)
    return root


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "nodes.csv"
    shutil.copy(DATA / "nodes.csv", path)
    return path


@pytest.fixture
def provision(sim: ChirpStackSimulator, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Run `citynode provision INVENTORY --server <sim> --tenant-id <default> --bundles <tmp> ARGS...`."""
    bundles = tmp_path / "bundles"

    def run(inventory: Path, *extra: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["provision", str(inventory), "--server", sim.address, "--tenant-id", DEFAULT_TENANT_ID,
                   "--bundles", str(bundles), *extra])
        out, err = capsys.readouterr()
        return rc, out, err

    run.bundles = bundles  # type: ignore[attr-defined]
    return run


@pytest.fixture
def update_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """`citynode fuota keygen --out <tmp>/fleet`: returns the PREFIX.pub path (PREFIX.key beside it)."""
    assert main(["fuota", "keygen", "--out", str(tmp_path / "fleet")]) == 0
    capsys.readouterr()
    return tmp_path / "fleet.pub"


def _app_trees(where: Path) -> tuple[Path, Path]:
    """Two app trees, versions 0.1.0 and 0.2.0, that differ in one module."""
    for version, body in (("0.1.0", b"A1"), ("0.2.0", b"A2")):
        (where / version / "lib").mkdir(parents=True)
        (where / version / "lib" / "app.mpy").write_bytes(body)
        (where / version / "VERSION").write_text(version)
    return where / "0.1.0", where / "0.2.0"


def _bundle(provision, eui: str) -> dict:
    return json.loads((provision.bundles / f"{eui}.json").read_text())


def _writes(sim: ChirpStackSimulator) -> list[str]:
    return [c for c in sim.state.calls if c.split(".")[1] in ("Create", "Update", "CreateKeys", "UpdateKeys")]


# ---- the GenAppKey ------------------------------------------------------------------------------


def test_every_device_gets_its_own_gen_app_key_in_chirpstack_and_in_its_bundle(sim, provision, inventory) -> None:
    rc, out, err = provision(inventory)
    assert rc == 0, err
    keys = {e: sim.state.devices[e].keys for e in EUIS}
    gens = [keys[e].gen_app_key for e in EUIS]
    assert all(len(g) == 32 and int(g, 16) for g in gens)  # 16 bytes, never the all-zero key
    assert len(set(gens)) == 4  # one per device
    assert not {k.nwk_key for k in keys.values()} & set(gens)  # not the AppKey
    for e in EUIS:
        bundle = _bundle(provision, e)
        assert bundle["gen_app_key"] == keys[e].gen_app_key
        assert bundle["app_key"] == keys[e].nwk_key
    assert "3 new AppKey(s) and 4 new GenAppKey(s) will be generated" in out  # nodes.csv gives one AppKey


def test_a_rerun_keeps_the_gen_app_keys(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    before = {e: sim.state.devices[e].keys.gen_app_key for e in EUIS}
    sim.state.calls.clear()
    rc, out, _ = provision(inventory)
    assert rc == 0 and "nothing to do" in out
    assert _writes(sim) == []
    assert {e: sim.state.devices[e].keys.gen_app_key for e in EUIS} == before


def test_the_bundles_gen_app_key_is_kept_when_chirpstack_lost_the_keys(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    flashed = _bundle(provision, EUIS[0])["gen_app_key"]
    sim.state.devices[EUIS[0]].keys = None  # someone deleted the keys in ChirpStack's UI
    rc, out, _ = provision(inventory)
    assert rc == 0 and "gen_app_key (bundle)" in out
    assert sim.state.devices[EUIS[0]].keys.gen_app_key == flashed
    assert "cannot take a FUOTA update" not in out  # the node's key did not change


@pytest.mark.parametrize("unset", ["", ZERO], ids=["empty", "all-zero"])
def test_a_device_provisioned_before_fuota_gets_a_gen_app_key_and_keeps_its_app_key(
        sim, provision, inventory, unset: str) -> None:
    """A fleet provisioned by an older citynode: ChirpStack has no GenAppKey (the real one answers with
    zeros, the simulator with nothing) and the bundles carry none."""
    assert provision(inventory)[0] == 0
    app_keys = {e: sim.state.devices[e].keys.nwk_key for e in EUIS}
    for e in EUIS:
        sim.state.devices[e].keys.gen_app_key = unset
        bundle = _bundle(provision, e)
        del bundle["gen_app_key"]
        (provision.bundles / f"{e}.json").write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n")
    rc, out, _ = provision(inventory)
    assert rc == 0
    assert "plan: 0 to create, 8 to update, 9 unchanged" in out  # keys and bundle of each node
    assert "gen_app_key (generated)" in out
    assert "new AppKey" not in out  # the nodes keep joining: their AppKeys are untouched
    warning = " ".join(line for line in out.splitlines() if "GenAppKey or update key" in line)
    assert "warning: 4 node(s) get a new GenAppKey or update key (fuota_pub)" in warning
    assert "reflashed with `citynode flash`" in out
    for e in EUIS:
        keys = sim.state.devices[e].keys
        assert keys.nwk_key == app_keys[e] and keys.app_key == ZERO
        assert keys.gen_app_key not in ("", ZERO) and _bundle(provision, e)["gen_app_key"] == keys.gen_app_key


def test_an_inventory_gen_app_key_is_used_and_replaces_the_one_chirpstack_has(sim, provision, inventory) -> None:
    mine = "000102030405060708090a0b0c0d0e0f"
    lines = inventory.read_text().splitlines()
    lines[1] += ",gen_app_key"
    lines[2] += "," + mine.upper()  # 70b3d57ed0000001
    lines[3:] = [line + "," for line in lines[3:]]
    inventory.write_text("\n".join(lines) + "\n")
    rc, out, _ = provision(inventory)
    assert rc == 0 and mine not in out
    assert sim.state.devices[EUIS[0]].keys.gen_app_key == mine == _bundle(provision, EUIS[0])["gen_app_key"]

    other = "f0e0d0c0b0a090807060504030201000"
    inventory.write_text(inventory.read_text().replace(mine.upper(), other))
    rc, out, _ = provision(inventory)
    assert rc == 0 and "gen_app_key (inventory)" in out and other not in out
    assert sim.state.devices[EUIS[0]].keys.gen_app_key == other == _bundle(provision, EUIS[0])["gen_app_key"]
    assert "new AppKey" not in out and "1 node(s) get a new GenAppKey or update key" in out


def test_a_malformed_inventory_gen_app_key_is_named_but_never_echoed(provision, inventory) -> None:
    bad = "0001020304050607"  # 8 bytes: half a key
    lines = inventory.read_text().splitlines()
    lines[1] += ",GenAppKey"
    lines[2:] = [line + "," for line in lines[2:]]
    lines[2] = lines[2][:-1] + "," + bad
    inventory.write_text("\n".join(lines) + "\n")
    rc, out, err = provision(inventory)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "field gen_app_key: key of wrong length: expected 32 hex digits (16 bytes), got 16 digits" in err
    assert bad not in err + out


def test_gen_app_keys_are_printed_only_when_asked(sim, provision, inventory) -> None:
    rc, out, err = provision(inventory)
    gens = [sim.state.devices[e].keys.gen_app_key for e in EUIS]
    assert rc == 0 and not any(g in out + err or g.upper() in out for g in gens)
    rc, out, _ = provision(inventory, "--show-keys")
    assert rc == 0
    assert "GenAppKeys (FUOTA multicast root; secret as well): dev_eui gen_app_key source name" in out
    assert f"70b3d57ed0000002 {gens[1]} chirpstack bin-heinrich-koenig-platz-3" in out


# ---- the update key -----------------------------------------------------------------------------


def test_the_update_key_goes_into_every_bundle_as_fuota_pub(sim, provision, inventory, update_key) -> None:
    pub = update_key.read_text().strip()
    rc, out, _ = provision(inventory, "--update-key", str(update_key))
    assert rc == 0 and "carry no update key" not in out
    assert {_bundle(provision, e)["fuota_pub"] for e in EUIS} == {pub}
    # It is the key packages are checked with: one signed with the private half verifies against it.
    base, target = _app_trees(update_key.parent)
    package = fuota.build_package(base, target, fuota.load_private_key(update_key.with_suffix(".key")))
    assert fuota.read_package(package, bytes.fromhex(_bundle(provision, EUIS[0])["fuota_pub"])).target == "0.2.0"


def test_the_update_key_can_come_from_the_environment(sim, provision, inventory, update_key, monkeypatch) -> None:
    monkeypatch.setenv("CITYNODE_FUOTA_UPDATE_KEY", str(update_key))
    assert provision(inventory)[0] == 0
    assert {_bundle(provision, e)["fuota_pub"] for e in EUIS} == {update_key.read_text().strip()}


def test_a_rerun_without_the_option_keeps_the_bundles_update_key(sim, provision, inventory, update_key) -> None:
    assert provision(inventory, "--update-key", str(update_key))[0] == 0
    rc, out, _ = provision(inventory)
    assert rc == 0 and "nothing to do" in out
    assert {_bundle(provision, e)["fuota_pub"] for e in EUIS} == {update_key.read_text().strip()}


def test_a_new_update_key_updates_the_bundles_and_warns_about_flashed_nodes(
        sim, provision, inventory, update_key, tmp_path, capsys) -> None:
    assert provision(inventory, "--update-key", str(update_key))[0] == 0
    assert main(["fuota", "keygen", "--out", str(tmp_path / "rotated")]) == 0
    rotated = tmp_path / "rotated.pub"
    sim.state.calls.clear()
    rc, out, _ = provision(inventory, "--update-key", str(rotated))
    assert rc == 0
    assert "plan: 0 to create, 4 to update, 13 unchanged" in out  # the bundles only
    assert _writes(sim) == []  # ChirpStack never sees the update key
    assert "warning: 4 node(s) get a new GenAppKey or update key (fuota_pub)" in out
    assert {_bundle(provision, e)["fuota_pub"] for e in EUIS} == {rotated.read_text().strip()}


def test_without_an_update_key_the_plan_says_the_bundles_lack_one(provision, inventory) -> None:
    rc, out, _ = provision(inventory)
    assert rc == 0
    assert "note: 4 bundle(s) carry no update key (fuota_pub): give --update-key PREFIX.pub" in out
    assert all("fuota_pub" not in _bundle(provision, e) for e in EUIS)


def _bad_key_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    pair = fuota.generate_keypair()
    files = {
        "private.key": (pair.private_pem, "this is the PRIVATE signing key; give the PREFIX.pub file"),
        "short.pub": (b"abcd\n", "expected the 64 hex digits of an Ed25519 public key"),
        "not-hex.pub": (b"z" * 64 + b"\n", "64 characters, not all hex digits"),
        "empty.pub": (b"", "got 0 characters"),
    }
    out = {}
    for name, (body, message) in files.items():
        (tmp_path / name).write_bytes(body)
        out[name] = (tmp_path / name, message)
    out["missing.pub"] = (tmp_path / "missing.pub", "No such file or directory")
    out["a directory"] = (tmp_path, "Is a directory")
    return out


@pytest.mark.parametrize("case", ["private.key", "short.pub", "not-hex.pub", "empty.pub", "missing.pub",
                                  "a directory"])
def test_a_bad_update_key_is_one_line_exit_2_and_changes_nothing(sim, provision, inventory, tmp_path,
                                                                 case: str) -> None:
    path, message = _bad_key_files(tmp_path)[case]
    rc, out, err = provision(inventory, "--update-key", str(path))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("citynode provision: error: update key ") and message in lines[0]
    assert "PRIVATE KEY" not in err + out
    assert _writes(sim) == [] and not provision.bundles.exists()


# ---- the device profiles ------------------------------------------------------------------------


def test_profiles_enable_the_three_fuota_packages_and_stay_class_a(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    assert len(sim.state.device_profiles) == 4
    for p in sim.state.device_profiles.values():
        alp = p.app_layer_params
        assert (alp.ts003_version, alp.ts003_f_port) == (api.TS003_v200, 202)  # clock sync
        assert (alp.ts004_version, alp.ts004_f_port) == (api.TS004_V200, 201)  # fragmentation
        assert (alp.ts005_version, alp.ts005_f_port) == (api.TS005_V200, 200)  # remote multicast setup
        # Class C comes with the multicast session only: a profile saying Class C would make ChirpStack
        # send a 1.0.x node's downlinks as Class C from its join on.
        assert (p.supports_class_b, p.supports_class_c) == (False, False)


def test_a_profile_made_before_fuota_is_updated_and_keeps_the_rest(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    for p in sim.state.device_profiles.values():
        p.ClearField("app_layer_params")
        p.rx1_delay = 3  # an operator's edit of a field provisioning does not manage
    rc, out, _ = provision(inventory)
    assert rc == 0 and "plan: 0 to create, 4 to update, 13 unchanged" in out
    rows = [line for line in out.splitlines() if "│ device-profile " in line and "update" in line]
    assert len(rows) == 4 and all(r.rstrip(" │").endswith("app_layer_params") for r in rows)
    for p in sim.state.device_profiles.values():
        assert p.app_layer_params.ts004_version == api.TS004_V200 and p.rx1_delay == 3


def test_fuota_deploy_accepts_a_provisioned_fleet(sim, provision, inventory, update_key, tmp_path,
                                                  capsys, monkeypatch) -> None:
    assert provision(inventory, "--update-key", str(update_key))[0] == 0
    base, target = _app_trees(tmp_path)
    package = tmp_path / "app-0.2.0.cnup"
    assert main(["fuota", "build", "--from", str(base), "--to", str(target),
                 "--key", str(update_key.with_suffix(".key")), "--out", str(package)]) == 0
    (app,) = sim.state.applications.values()
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_SERVER", sim.address)
    capsys.readouterr()
    assert main(["fuota", "deploy", str(package), "--application", app.id, "--devices", "all"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "4 devices, 4 deployment(s) started" in out
    deployed = {s.deployment.name: sorted(s.devices) for s in sim.state.fuota.values()}
    assert deployed == {f"citynode 0.2.0 {profile_name(role)}": [eui] for role, eui in
                        zip(("air_quality", "bin_fill", "passenger_count", "crowd_count"), EUIS)}
    assert all(s.started_at is not None for s in sim.state.fuota.values())


# ---- onto the node ------------------------------------------------------------------------------


def test_flashing_copies_both_fuota_keys_into_the_nodes_config(sim, provision, inventory, update_key,
                                                               monkeypatch) -> None:
    assert provision(inventory, "--update-key", str(update_key))[0] == 0
    bundle = _bundle(provision, EUIS[1])
    monkeypatch.delenv("CITYNODE_ROOT")  # the checkout's boards/ and firmware validate the config
    config = config_from_bundle(bundle, "ttgo_lora32_v21")
    assert config["gen_app_key"] == bundle["gen_app_key"] == sim.state.devices[EUIS[1]].keys.gen_app_key
    assert config["fuota_pub"] == update_key.read_text().strip()
