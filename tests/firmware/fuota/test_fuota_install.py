"""From a checked package to a running update, on the MicroPython unix port (citynode.fuota.install,
.slots, .node, citynode.run.trial): the package goes to the inactive app slot, one atomic marker write
switches to it on trial, the self-test confirms it or the node rolls back, and a new app that crashes on
boot MAX_TRIAL_BOOTS times is rolled back too. A power cut at any write of install, swap, trial boot and
rollback leaves the old app or the new one, never a mix (the harness of the session store's power-cut
tests: every write is an instant where the power can go, a write torn halfway included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.field import fuota
from gateway.field.micropython import run_code

OLD = {"toy/__init__.py": "V = '0.1.0'\n", "toy/a.py": "X = 1\n" * 40, "toy/old.py": "gone = True\n",
       "toy/keep.py": "K = 3\n" * 100}
NEW = {"toy/__init__.py": "V = '0.2.0'\n", "toy/a.py": "X = 2\n" * 50, "toy/new.py": "N = 4\n" * 300,
       "toy/keep.py": "K = 3\n" * 100}


def _tree(root: Path, version: str, files: dict[str, str]) -> Path:
    root.mkdir()
    (root / "VERSION").write_text(version)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


@pytest.fixture(scope="module")
def pkg(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("trees")
    pair = fuota.generate_keypair()
    key = load_pem_private_key(pair.private_pem, None)
    old, new = _tree(d / "v1", "0.1.0", OLD), _tree(d / "v2", "0.2.0", NEW)
    other = _tree(d / "v0", "0.0.9", OLD)
    return {"good": fuota.build_package(old, new, key).hex(), "pub": pair.public_raw.hex(),
            "full": fuota.build_package(old, new, key, full=True).hex(),
            "wrong_base": fuota.build_package(other, new, key).hex(),
            "foreign": fuota.build_package(old, new, load_pem_private_key(fuota.generate_keypair().private_pem,
                                                                          None)).hex()}


HARNESS = r"""
import json, os, sys
from binascii import unhexlify
from citynode import files
from citynode.fuota import install, package, slots, store
ARGS = json.loads(sys.stdin.readline())
OLD, NEW = ARGS["old"], ARGS["new"]

class Cut(BaseException):  # a power cut: no handler of the code under test may catch it
    pass

class Power:  # counts the writes; the power goes at write number `at` (0: never)
    at = 0
    n = 0
    def step(self, what):
        self.n += 1
        if self.n == self.at:
            raise Cut(what)
P = Power()
_open = open

class TornFile:
    def __init__(self, f):
        self.f = f
    def write(self, b):
        P.n += 1
        if P.n == P.at:  # torn: half the bytes reach the flash
            self.f.write(b[:len(b) // 2])
            self.f.close()
            raise Cut("write")
        return self.f.write(b)
    def flush(self):
        pass
    def close(self):
        self.f.close()
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.f.close()

def cut_open(path, mode="r"):
    if "w" in mode or "+" in mode or "a" in mode:
        P.step("open " + path)
        return TornFile(_open(path, mode))
    return _open(path, mode)

class CutOS:
    def rename(self, a, b):
        P.step("rename")
        os.rename(a, b)
    def remove(self, p):
        P.step("remove")
        os.remove(p)
    def mkdir(self, p):
        P.step("mkdir")
        os.mkdir(p)
    def rmdir(self, p):
        P.step("rmdir")
        os.rmdir(p)
    def listdir(self, p):
        return os.listdir(p)
    def stat(self, p):
        return os.stat(p)

for m in (files, install):
    m.open = cut_open
    m.os = CutOS()

def mkdirs(path):
    part = ""
    for name in path.split("/")[:-1]:
        part = part + "/" + name if part else name
        try:
            os.mkdir(part)
        except OSError:
            pass

def put(root, tree):
    for rel, text in tree.items():
        mkdirs(root + rel)
        with _open(root + rel, "w") as f:
            f.write(text)

def isdir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False

def snapshot(top, rel=""):
    out = {}
    for name in os.listdir(top + "/" + rel if rel else top):
        r = rel + "/" + name if rel else name
        if isdir(top + "/" + r):
            out.update(snapshot(top, r))
        elif r != "VERSION":
            with _open(top + "/" + r) as f:
                out[r] = f.read()
    return out

def booted(root):
    # What the node runs after the cut: the slot select() picks at the next boot, and its version.
    P.at = 0
    m = slots.select(root, forget=False)
    tree = root + "app_" + m["active"] if m.get("active") else root + "factory"
    snap = snapshot(tree)
    version = slots.running_version("0.1.0", root)
    which = "old" if snap == OLD else "new" if snap == NEW else "MIX"
    want = {"old": "0.1.0", "new": "0.2.0"}.get(which)
    return which if version == want else which + " with version " + version

def fresh(name):
    root = name + "/"
    os.mkdir(name)
    put(root + "factory/", OLD)
    return root

data = unhexlify(ARGS["pkg"])
s = store.RamStore(len(data))
s.write(0, data)
"""


def _run(micropython, tmp_path: Path, pkg: dict, code: str, name: str = "good"):
    # 256 KB: the harness itself (file snapshots of every cut) needs more than a node's heap on the
    # 64-bit port; what FUOTA needs on a node is bench/fuota_node.py's measure
    stdin = json.dumps({"old": OLD, "new": NEW, "pkg": pkg[name], "pub": pkg["pub"]}) + "\n"
    out = run_code(HARNESS + code, heapsize="256k", stdin=stdin, cwd=tmp_path, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_install_swaps_to_the_new_version_on_trial_and_confirm_keeps_it(micropython, tmp_path, pkg) -> None:
    r = _run(micropython, tmp_path, pkg, r"""
root = fresh("n")
manifest, reason = package.check(s, len(data), unhexlify(ARGS["pub"]), "0.1.0")
before = slots.read(root)
slot = install.install(manifest, s, root + "factory", root)
m = slots.select(root, forget=False)
running = booted(root)
slots.confirm(root)
for _ in range(5):  # reboots after the confirmation: no trial boots counted, no rollback
    slots.select(root, forget=False)
after = slots.read(root)
print(json.dumps([reason, before["active"], slot, m["trial"], m["boots"], running, after["active"],
                  after["trial"], after["update"], after["detail"], booted(root)]))
""")
    assert r == [None, None, "a", True, 1, "new", "a", False, "installed", "0.2.0", "new"]


def test_a_new_app_that_crashes_on_boot_is_rolled_back(micropython, tmp_path, pkg) -> None:
    r = _run(micropython, tmp_path, pkg, r"""
root = fresh("n")
manifest, reason = package.check(s, len(data), unhexlify(ARGS["pub"]), "0.1.0")
install.install(manifest, s, root + "factory", root)
seen = []
for boot in range(slots.MAX_TRIAL_BOOTS + 1):  # each boot crashes before the self-test confirms it
    m = slots.select(root, forget=False)
    seen.append([m["active"], m["trial"]])
m = slots.read(root)
print(json.dumps([seen, m["update"], m["detail"], booted(root)]))
""")
    seen, update, detail, running = r
    assert seen == [["a", True]] * 3 + [[None, False]]
    assert (update, detail, running) == ("rolled_back_crash", "0.2.0", "old")


def test_a_failed_self_test_rolls_back_to_the_previous_app(micropython, tmp_path, pkg) -> None:
    # citynode.run.trial: the node on trial runs citynode.selftest; here its config.json is missing, so
    # the config check fails, the marker goes back to the factory app and the node must reboot.
    r = _run(micropython, tmp_path, pkg, r"""
root = ""
put("factory/", OLD)
manifest, reason = package.check(s, len(data), unhexlify(ARGS["pub"]), "0.1.0")
install.install(manifest, s, "factory", root)
slots.select(root, forget=False)
from citynode import run
reboot = run.trial()
m = slots.read(root)
print(json.dumps([reboot, m["active"], m["update"], m["detail"], booted(root)]))
""")
    assert r == [True, None, "rolled_back_selftest", "0.2.0", "old"]


HAND_OVER = r"""
from citynode.fuota.node import FuotaNode
class Mac:
    def now_ms(self):
        return 0
class Frag:  # a TS004 session whose block is complete in the block file
    complete = True
    active = True
    index = 0
    received = 7
    length = len(data)
def hand_over(root, running="0.1.0", pub=ARGS["pub"], tree="factory"):
    # the running app: the block is complete -> one write of fuota.json hands it over (no check here)
    with _open(root + "fuota.bin", "wb") as f:
        f.write(data)
    with _open(root + "config.json", "w") as f:
        f.write(json.dumps({"fuota_pub": pub}))
    node = FuotaNode({"fuota_pub": pub}, Mac(), lambda: 1767225600, running, root + tree if tree else None,
                     out=lambda *a: None, root=root)
    fr = Frag()
    fr.store = store.FileStore(root + "fuota.bin", len(data))
    node.fuota.fragmentation = fr
    return node.finish(), node.refused, isdir(root + "app_a")
def left(root):  # what the boot step leaves behind: the hand-over entry, the block
    st = files.read(root + "fuota.json")
    return ["install" in st, "fuota.bin" in os.listdir(root)]
"""


def test_the_app_hands_the_block_over_and_the_boot_step_installs_it(micropython, tmp_path, pkg) -> None:
    # the app writes nothing but fuota.json; the next boot (main.py's slots.select, before the app is
    # imported) checks the package, installs it on trial, drops the hand-over and the block
    r = _run(micropython, tmp_path, pkg, HAND_OVER + r"""
root = fresh("n")
handed, refused, staged = hand_over(root)
before = slots.read(root)
st = files.read(root + "fuota.json")
m = slots.select(root, forget=False)
print(json.dumps([handed, refused, staged, before["active"], st["install"]["seq"], st["done"],
                  m["active"], m["trial"], m["boots"], m["update"], m["detail"], m["block"], left(root),
                  booted(root)]))
""")
    assert r == [True, None, False, None, 1, [0, 7], "a", True, 1, "installed", "0.2.0", 1, [False, False], "new"]


@pytest.mark.parametrize(("name", "running", "code"), [
    ("good", "0.0.9", "refused_base"),  # the package's base is not the running version
    ("wrong_base", "0.1.0", "refused_base"),
    ("foreign", "0.1.0", "refused_signature"),  # signed by another key
    ("tampered", "0.1.0", "refused_hash"),  # a byte of a file body flipped
])
def test_a_refused_package_writes_nothing_and_is_reported(micropython, tmp_path, pkg, name, running, code) -> None:
    if name == "tampered":
        b = bytearray.fromhex(pkg["good"])
        b[-1] ^= 1
        pkg = dict(pkg, tampered=b.hex())
    r = _run(micropython, tmp_path, pkg, HAND_OVER + r"""
root = fresh("n")
handed, refused, staged = hand_over(root, ARGS["running"])
m = slots.select(root, forget=False)
print(json.dumps([handed, m["update"], m["detail"], m["active"], isdir(root + "app_a"), left(root), booted(root)]))
""".replace('ARGS["running"]', repr(running)), name=name)
    handed, update, detail, active, staged, leftover, running_now = r
    assert (handed, update, active, staged, leftover, running_now) == (True, code, None, False, [False, False], "old")
    assert detail


def test_without_fuota_pub_the_app_refuses_the_block_itself(micropython, tmp_path, pkg) -> None:
    r = _run(micropython, tmp_path, pkg, HAND_OVER + r"""
root = fresh("n")
handed, refused, staged = hand_over(root, pub=None)
m = slots.read(root)
print(json.dumps([handed, refused, m["update"], "install" in files.read(root + "fuota.json")]))
""")
    assert r == [False, "no fuota_pub", "refused_other", False]


def test_a_boot_step_that_fails_unexpectedly_boots_the_old_app_and_reports_it(micropython, tmp_path, pkg) -> None:
    # a hand-over entry the step cannot read: no boot loop; the entry is dropped, the refusal reported
    r = _run(micropython, tmp_path, pkg, HAND_OVER + r"""
root = fresh("n")
files.write(root + "fuota.json", {"session_cnt": 0, "install": "garbage"})
m = slots.select(root, forget=False)
m2 = slots.select(root, forget=False)
print(json.dumps([m["update"], m["detail"], m["active"], files.read(root + "fuota.json"), booted(root)]))
""")
    assert r == ["refused_other", "boot step: AttributeError", None, {"session_cnt": 0}, "old"]


@pytest.mark.parametrize(("name", "frozen", "want"), [
    ("good", True, ["refused_other", "partial package, frozen app", None, False, "old"]),
    ("full", True, ["installed", "0.2.0", "a", True, "new"]),
    ("full", False, ["installed", "0.2.0", "a", True, "new"]),
])
def test_a_node_whose_factory_app_is_frozen_takes_only_a_full_package(micropython, tmp_path, pkg, name, frozen,
                                                                      want) -> None:
    # The factory app frozen into the image (the app passes no tree) cannot be copied into a slot: a
    # partial package is refused after its check, nothing written; a full one (`citynode fuota build
    # --full`) is installed alone, as it is on a node whose app is on the filesystem. ("factory/" here
    # stands for the frozen app's modules: the tree the node runs while no slot is active.)
    r = _run(micropython, tmp_path, pkg, HAND_OVER + r"""
root = fresh("n")
hand_over(root, tree=None if ARGS["frozen"] else "factory")
m = slots.select(root, forget=False)
print(json.dumps([m["update"], m["detail"], m["active"], isdir(root + "app_a"), booted(root)]))
""".replace('ARGS["frozen"]', repr(frozen)), name=name)
    assert r == want


@pytest.mark.parametrize(("name", "final"), [("good", "new"), ("tampered", "old")])
def test_a_power_cut_at_any_write_of_the_boot_step_resumes_it(micropython, tmp_path, pkg, name, final) -> None:
    # The power goes at write k of the boot step (check, stage, swap, the hand-over's removal) for every
    # k; the next boot runs the step again or finds it done: it ends with exactly the new app installed
    # once (a good package) or the old one and the refusal reported (a tampered one), never a mix, and
    # nothing is left of the hand-over.
    if name == "tampered":
        b = bytearray.fromhex(pkg["good"])
        b[-1] ^= 1
        pkg = dict(pkg, tampered=b.hex())
    r = _run(micropython, tmp_path, pkg, HAND_OVER + r"""
results = []
k = 0
while True:
    k += 1
    root = fresh("k%d" % k)
    hand_over(root)
    P.n = 0
    P.at = k
    try:
        slots.select(root, forget=False)
        cut = False
    except Cut:
        cut = True
    which = booted(root)  # the next boot, no cut: the step resumes or is done
    m = slots.read(root)
    results.append([k, cut, which, m["update"], m.get("block"), m.get("versions"), left(root)])
    if not cut:
        break
print(json.dumps(results))
""", name=name)
    assert len(r) > (20 if final == "new" else 3)  # every write of the step was a cut point
    code, versions = ("installed", {"a": "0.2.0"}) if final == "new" else ("refused_hash", {})
    assert all(x[2:] == [final, code, 1, versions, [False, False]] for x in r), [x for x in r if x[2:] != [final, code, 1, versions, [False, False]]]
    assert r[-1][1] is False


def test_a_power_cut_at_any_write_leaves_the_old_or_the_new_app(micropython, tmp_path, pkg) -> None:
    # install (stage + swap), the trial boot, the self-test's rollback: the power goes at write k for
    # every k; the next boot runs exactly the old tree or exactly the new one, with its version.
    r = _run(micropython, tmp_path, pkg, r"""
manifest, reason = package.check(s, len(data), unhexlify(ARGS["pub"]), "0.1.0")
results = []
k = 0
while True:
    k += 1
    root = fresh("k%d" % k)
    P.n = 0
    P.at = k
    try:
        install.install(manifest, s, root + "factory", root)
        slots.select(root, forget=False)
        slots.rollback("selftest", root)
        cut = False
    except Cut:
        cut = True
    which = booted(root)
    again = None
    if cut and which == "old" and not slots.read(root).get("trial"):
        install.install(manifest, s, root + "factory", root)  # the next update attempt completes
        again = booted(root)
    results.append([k, cut, which, again])
    if not cut:
        break
print(json.dumps(results))
""", )
    assert len(r) > 20  # every write of the sequence was a cut point
    assert {x[2] for x in r} == {"old", "new"}, [x for x in r if x[2] not in ("old", "new")]
    assert r[-1][1:3] == [False, "old"]  # no cut: installed, then rolled back
    assert all(x[3] in (None, "new") for x in r)
    # the switch is one write: every cut before it boots the old app, every one after it the new one
    # until the rollback's write
    flips = [i for i in range(1, len(r)) if r[i][2] != r[i - 1][2]]
    assert len(flips) == 2
