"""What may be flashed and frozen is the device package `citynode`; the simulation lives in the separate
MicroPython package `citynode_sim` (gateway/sim/mpy), never frozen, copied only to the virtual device.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from gateway.field.firmware_build import build_firmware
from gateway.field.flash import is_virtual_board, load_board
from gateway.field.micropython import find_micropython, interpreter
from gateway.paths import boards_dir, firmware_dir, sim_mpy_dir

DEVICE = firmware_dir() / "lib" / "citynode"
SIM = sim_mpy_dir() / "citynode_sim"
# The only places the device package reaches the simulation: lazily, when the board is the sim board
# (the HAL factory, the sim board's virtual radio and its clock).
LAZY_SIM_IMPORTS = {
    ("hal/__init__.py", "citynode_sim.simlink"), ("hal/__init__.py", "citynode_sim.sim"),
    ("boards.py", "citynode_sim.udp"), ("maclink.py", "citynode_sim.udp"),
}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports anywhere) of a source file, as dotted module names."""
    tree = ast.parse(path.read_text())

    def names(nodes) -> set[str]:
        out = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__" and node.args \
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                out.add(node.args[0].value)
        return out

    top = names(n for n in tree.body)
    for node in tree.body:  # module-level try/if blocks run at import time too
        if isinstance(node, (ast.Try, ast.If)):
            top |= names(ast.walk(node))
    return top, names(ast.walk(tree))


def _modules(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def test_the_device_package_never_imports_the_simulation_at_module_level() -> None:
    lazy = set()
    for name, path in _modules(DEVICE, "citynode").items():
        top, anywhere = _imports(path)
        assert not {m for m in top if m.split(".")[0] == "citynode_sim"}, f"{name} imports citynode_sim at module level"
        rel = path.relative_to(DEVICE).as_posix()
        lazy |= {(rel, m) for m in anywhere if m in _modules(SIM, "citynode_sim")}
    assert lazy == LAZY_SIM_IMPORTS


def test_the_device_package_holds_no_module_only_a_simulation_uses() -> None:
    device = _modules(DEVICE, "citynode")
    sim = _modules(SIM, "citynode_sim")
    used_by_device = set()
    for path in device.values():
        used_by_device |= _imports(path)[1]
    used_by_sim_only = set()
    for path in sim.values():
        used_by_sim_only |= {m for m in _imports(path)[1] if m.startswith("citynode.")}
    # Every device module is imported by another device module, main.py, a role or the boot (its
    # reason to be on a board), or is a package; none is reachable only from the simulation.
    main = _imports(firmware_dir() / "main.py")[1]
    roots = {"citynode", "citynode.run", "citynode.selftest", "citynode.codec_tables"} | main
    orphans = {name for name in device if name not in used_by_device | roots and not name.endswith("__init__")}
    packages = {n for n, p in device.items() if p.name == "__init__.py"}
    role_and_driver_modules = {n for n in device if n.startswith(("citynode.roles.", "citynode.drivers."))}
    hal_backends = {"citynode.hal.mpy", "citynode.hal.cpy", "citynode.hal.cpy_bme680"}
    # The FUOTA packages (TS003/TS004/TS005, signed updates): a library the app's downlink handler loads
    # lazily once the MAC's Class C session lands (issue 19; docs/design/fuota.md).
    fuota = {n for n in device if n.startswith("citynode.fuota.")}
    assert orphans - packages - role_and_driver_modules - hal_backends - fuota == set(), (
        "device modules nothing on a device imports"
    )
    assert not any(p.stem.startswith("sim") for p in DEVICE.rglob("*.py")), "simulator modules in the device package"
    for gone in ("hal/sim.py", "hal/simlink.py", "radio/udp.py", "crowd/synthetic.py", "crowd/replay.py"):
        assert not (DEVICE / gone).exists(), gone
    unknown = {m for m in used_by_sim_only if m not in device and m.rpartition(".")[0] not in device}
    assert unknown == set(), "citynode_sim uses device modules that do not exist"


def test_the_manifest_freezes_the_device_package_only() -> None:
    lib_manifest = (firmware_dir() / "lib" / "manifest.py").read_text()
    assert 'package("citynode")' in lib_manifest and "citynode_sim" not in lib_manifest.replace("(citynode_sim)", "")
    esp32 = (firmware_dir() / "manifest.py").read_text()
    unix32 = (Path(__file__).parent / "unix32" / "manifest.py").read_text()
    assert 'include("lib/manifest.py")' in esp32  # the one thing both builds share
    assert "firmware/lib/manifest.py" in unix32
    assert "package(" not in esp32 and "package(" not in unix32


def test_the_frozen_32_bit_build_holds_citynode_and_not_the_simulation() -> None:
    info = interpreter()
    if not info.frozen_citynode:
        pytest.skip(f"{info.path} has no citynode frozen in (set CITYNODE_MICROPYTHON to build/micropython-unix32)")
    names = sorted(_modules(DEVICE, "citynode"))
    code = (
        "import sys\nsys.path[:] = ['.frozen']\nbad = []\n"
        f"for name in {names!r}:\n"
        "    try:\n        __import__(name)\n    except ImportError as e:\n        bad.append(name)\n"
        "try:\n    import citynode_sim\n    bad.append('citynode_sim is frozen')\nexcept ImportError:\n    pass\n"
        "print(bad)\n"
    )
    proc = subprocess.run([find_micropython(), "-X", "heapsize=1m", "-c", code], capture_output=True, text=True,
                          timeout=60, cwd="/", env={})
    # modules that need hardware (machine, busio) cannot import on the unix port; everything else must
    missing = eval(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else proc.stderr
    assert missing == [] or set(missing) <= {"citynode.hal.cpy", "citynode.hal.cpy_bme680"}, missing
    # exactly the device package's modules, no more: a build older than the sources fails here
    listed = subprocess.run([find_micropython(), "-c", "help('modules')"], capture_output=True, text=True,
                            timeout=60, cwd="/", env={}).stdout.split()
    frozen = {m.removesuffix("/__init__").replace("/", ".") for m in listed if m.startswith("citynode")}
    assert frozen == set(names), f"rebuild with `make firmware-unix`: frozen {sorted(frozen ^ set(names))}"


def test_only_the_virtual_board_gets_the_simulation_package(tmp_path: Path) -> None:
    boards = {p.stem: load_board(p.stem) for p in boards_dir().glob("*.json")}
    # the sim board and its AT-modem variants (sim_rak3172, sim_wio_e5): the unix port's boards
    assert sorted(name for name, board in boards.items() if is_virtual_board(board)) == ["sim", "sim_rak3172", "sim_wio_e5"]
    device_tree = build_firmware(tmp_path / "board")
    assert not [m.path for m in device_tree if "citynode_sim" in m.path]
    virtual_tree = build_firmware(tmp_path / "virtual", sim=True)
    sim_files = sorted(m.path for m in virtual_tree if "citynode_sim" in m.path)
    assert sim_files == sorted(f"lib/citynode_sim/{p.stem}.mpy" for p in SIM.glob("*.py"))


def test_citynode_flash_copies_the_simulation_to_the_virtual_device_only(tmp_path: Path) -> None:
    from gateway.field.flash import app_files

    app = tmp_path / "app"
    build_firmware(app)
    extra = {"config.json": b"{}", "board.json": b"{}"}
    for name in sorted(p.stem for p in boards_dir().glob("*.json")):
        files = app_files(load_board(name), extra, app)
        sim = sorted(f for f in files if f.startswith("lib/citynode_sim/"))
        assert "lib/citynode/app.mpy" in files and "main.py" in files, name
        if name in ("sim", "sim_rak3172", "sim_wio_e5"):  # the virtual boards (unix port)
            assert sim == sorted(f"lib/citynode_sim/{p.stem}.mpy" for p in SIM.glob("*.py"))
        else:
            assert sim == [], f"{name}: a real board got {sim}"
