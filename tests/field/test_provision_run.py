"""`citynode provision` against the ChirpStack API simulator: create, no-op rerun, updates, failures."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import grpc
import pytest
from chirpstack_api import api, common

from gateway.cli import main
from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

DATA = Path(__file__).parent / "data"
TOKEN = "test-api-token"
INVENTORY_KEY = "2b7e151628aed2a6abf7158809cf4f3c"  # nodes.csv gives this AppKey to 70b3d57ed0000003
PLACEHOLDER_CODEC = "// placeholder codec for tests\nfunction decodeUplink(input) { return {data: {}}; }\n"
EUIS = [f"70b3d57ed000000{i}" for i in range(1, 5)]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away CITYNODE_ROOT with a placeholder ChirpStack codec; the token in the environment."""
    root = tmp_path / "root"
    (root / "codecs" / "chirpstack").mkdir(parents=True)
    (root / "codecs" / "chirpstack" / "citynode.js").write_text(PLACEHOLDER_CODEC)
    monkeypatch.setenv("CITYNODE_ROOT", str(root))
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_TOKEN", TOKEN)
    monkeypatch.delenv("CITYNODE_CHIRPSTACK_TOKEN_FILE", raising=False)
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


def _writes(sim: ChirpStackSimulator) -> list[str]:
    return [c for c in sim.state.calls if c.split(".")[1] in ("Create", "Update", "CreateKeys", "UpdateKeys")]


def test_first_run_creates_application_profiles_devices_keys_and_bundles(sim, provision, inventory) -> None:
    rc, out, err = provision(inventory)
    assert (rc, err) == (0, "")
    assert "plan: 17 to create, 0 to update, 0 unchanged" in out
    assert "done: 17 steps" in out

    (app,) = sim.state.applications.values()
    assert (app.name, app.tenant_id, dict(app.tags)) == ("citynode", DEFAULT_TENANT_ID, {"managed_by": "citynode"})

    profiles = {p.name: p for p in sim.state.device_profiles.values()}
    assert sorted(profiles) == ["citynode-air_quality", "citynode-bin_fill", "citynode-crowd_count",
                                "citynode-passenger_count"]
    for role, interval in [("air_quality", 600), ("bin_fill", 3600), ("passenger_count", 300), ("crowd_count", 900)]:
        p = profiles[f"citynode-{role}"]
        assert p.region == common.EU868
        assert p.mac_version == common.LORAWAN_1_0_4
        assert p.reg_params_revision == common.RP002_1_0_3
        assert p.supports_otaa and not p.supports_class_b and not p.supports_class_c
        assert p.payload_codec_runtime == api.CodecRuntime.JS
        assert p.payload_codec_script == PLACEHOLDER_CODEC
        assert (p.uplink_interval, p.device_status_req_interval) == (interval, 1)

    assert sorted(sim.state.devices) == EUIS
    aq = sim.state.devices["70b3d57ed0000001"].device
    assert aq.name == "aq-buer-markt" and aq.application_id == app.id
    assert aq.device_profile_id == profiles["citynode-air_quality"].id
    assert dict(aq.tags) == {"role": "air_quality", "board": "heltec_wifi_lora_32_v3", "lat": "51.578100",
                             "lon": "7.056800", "district": "Buer", "owner": "Umweltamt", "managed_by": "citynode"}
    assert sim.state.devices["70b3d57ed0000002"].device.join_eui == "70b3d57ed0001000"
    assert "lat" not in sim.state.devices["70b3d57ed0000003"].device.tags  # the bus has no fixed place

    keys = {eui: sim.state.devices[eui].keys for eui in EUIS}
    assert keys["70b3d57ed0000003"].nwk_key == INVENTORY_KEY  # LoRaWAN 1.0.x AppKey goes in nwk_key
    assert all(k.app_key == "0" * 32 for k in keys.values())
    generated = {keys[e].nwk_key for e in EUIS if e != "70b3d57ed0000003"}
    assert len(generated) == 3 and all(len(k) == 32 for k in generated)


def test_bundles_hold_what_the_node_needs(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    bundle = json.loads((provision.bundles / "70b3d57ed0000002.json").read_text())
    assert bundle == {
        "format": "citynode-node-bundle/1",
        "dev_eui": "70b3d57ed0000002",
        "join_eui": "70b3d57ed0001000",
        "app_key": sim.state.devices["70b3d57ed0000002"].keys.nwk_key,
        "gen_app_key": sim.state.devices["70b3d57ed0000002"].keys.gen_app_key,  # FUOTA's multicast root
        "name": "bin-heinrich-koenig-platz-3",
        "role": "bin_fill",
        "board": "ttgo_lora32_v21",
        "region": "EU868",
        "lorawan": "1.0.4",
        "fport": 11,
        "intervals": {"interval": 3600, "status_interval": 24},
        "location": {"lat": 51.5076, "lon": 7.0987},
    }


def test_bundle_files_are_private(provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    assert stat.S_IMODE(provision.bundles.stat().st_mode) == 0o700
    files = sorted(provision.bundles.iterdir())
    assert [f.name for f in files] == [f"{e}.json" for e in EUIS]  # no temporary files left behind
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_widened_bundle_permissions_are_repaired(provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    target = provision.bundles / "70b3d57ed0000001.json"
    target.chmod(0o644)
    rc, out, _ = provision(inventory)
    assert rc == 0
    assert "permissions 0644 -> 0600" in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_open_bundle_directory_is_refused(provision, inventory) -> None:
    provision.bundles.mkdir(mode=0o755)
    provision.bundles.chmod(0o755)
    rc, _, err = provision(inventory)
    assert rc == 2
    assert "others can read it (mode 0755)" in err and "chmod 700" in err


def test_second_run_changes_nothing_and_says_so(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    before = {p: (provision.bundles / p).read_bytes() for p in os.listdir(provision.bundles)}
    sim.state.calls.clear()
    rc, out, _ = provision(inventory)
    assert rc == 0
    assert "plan: 0 to create, 0 to update, 17 unchanged" in out
    assert "nothing to do" in out
    assert _writes(sim) == []
    assert {p: (provision.bundles / p).read_bytes() for p in os.listdir(provision.bundles)} == before


def test_yaml_inventory_gives_the_same_result(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    rc, out, _ = provision(DATA / "nodes.yaml")
    assert rc == 0 and "nothing to do" in out


def test_changed_name_and_tag_are_updates_of_that_device_only(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    text = inventory.read_text().replace("aq-buer-markt", "aq-buer-marktplatz").replace("owner=Umweltamt", "owner=GE")
    inventory.write_text(text)
    sim.state.calls.clear()
    rc, out, _ = provision(inventory)
    assert rc == 0
    assert "plan: 0 to create, 2 to update, 15 unchanged" in out
    assert "name, description" not in out  # the description is derived from role and board, unchanged
    device_row = next(line for line in out.splitlines() if "│ device " in line and "update" in line)
    assert "name" in device_row and "tags (owner)" in device_row
    assert _writes(sim) == ["DeviceService.Update"]
    dev = sim.state.devices["70b3d57ed0000001"].device
    assert dev.name == "aq-buer-marktplatz" and dev.tags["owner"] == "GE"
    assert json.loads((provision.bundles / "70b3d57ed0000001.json").read_text())["name"] == "aq-buer-marktplatz"


def test_changed_codec_updates_every_profile(sim, provision, inventory, root) -> None:
    assert provision(inventory)[0] == 0
    (root / "codecs" / "chirpstack" / "citynode.js").write_text(PLACEHOLDER_CODEC + "// v2\n")
    rc, out, _ = provision(inventory)
    assert rc == 0 and "plan: 0 to create, 4 to update" in out
    assert all(p.payload_codec_script.endswith("// v2\n") for p in sim.state.device_profiles.values())


def test_changed_inventory_key_updates_the_keys(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    new_key = "000102030405060708090a0b0c0d0e0f"
    inventory.write_text(inventory.read_text().replace(INVENTORY_KEY.upper(), new_key))
    rc, out, _ = provision(inventory)
    assert rc == 0
    assert sim.state.devices["70b3d57ed0000003"].keys.nwk_key == new_key
    assert json.loads((provision.bundles / "70b3d57ed0000003.json").read_text())["app_key"] == new_key
    assert new_key not in out


def test_a_changed_app_key_warns_that_the_flashed_node_stops_joining(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    inventory.write_text(inventory.read_text().replace(INVENTORY_KEY.upper(), "000102030405060708090a0b0c0d0e0f"))
    for extra in (("--dry-run",), ()):
        rc, out, _ = provision(inventory, *extra)
        assert rc == 0
        warning = " ".join(line for line in out.splitlines() if "new AppKey" in line)
        assert "warning: 1 node(s) get a new AppKey" in warning
        assert "stops joining" in out and "reflashed with `citynode flash`" in out
        assert "70b3d57ed0000003 bus-302-front-door" in out
    rc, out, _ = provision(inventory)
    assert rc == 0 and "new AppKey" not in out  # nothing changes on a rerun: no warning


def test_dry_run_changes_nothing(sim, provision, inventory) -> None:
    rc, out, _ = provision(inventory, "--dry-run")
    assert rc == 0
    assert "plan: 17 to create" in out and "dry run: nothing was changed" in out
    assert not sim.state.applications and not sim.state.device_profiles and not sim.state.devices
    assert not provision.bundles.exists()
    assert _writes(sim) == []


def test_dry_run_after_a_change_shows_the_update_only(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    inventory.write_text(inventory.read_text().replace("district=Altstadt", "district=Altstadt-Nord"))
    sim.state.calls.clear()
    rc, out, _ = provision(inventory, "--dry-run")
    assert rc == 0 and "plan: 0 to create, 1 to update, 16 unchanged" in out
    assert _writes(sim) == []
    assert sim.state.devices["70b3d57ed0000002"].device.tags["district"] == "Altstadt"


def test_failure_mid_run_is_reported_and_a_rerun_completes_it(sim, provision, inventory) -> None:
    sim.state.inject_fault("DeviceService.Create", "70b3d57ed0000002", code=grpc.StatusCode.INTERNAL,
                           message="database is locked")
    rc, out, err = provision(inventory)
    assert rc == 2
    assert "FAILED device 70b3d57ed0000002 bin-heinrich-koenig-platz-3 (create):" in out
    assert "INTERNAL: database is locked" in out
    assert "not attempted: 2 steps" in out
    assert "keys 70b3d57ed0000002 bin-heinrich-koenig-platz-3: its device step failed" in out
    assert "done: 14 steps" in out
    assert "run the same command again" in err
    assert sorted(sim.state.devices) == [EUIS[0], EUIS[2], EUIS[3]]  # the others went ahead
    assert not (provision.bundles / "70b3d57ed0000002.json").exists()

    rc, out, _ = provision(inventory)
    assert rc == 0
    assert "plan: 3 to create, 0 to update, 14 unchanged" in out
    assert sorted(sim.state.devices) == EUIS
    assert provision(inventory)[1].count("nothing to do") == 1


def test_failure_between_device_and_keys_is_completed_with_one_key(sim, provision, inventory) -> None:
    sim.state.inject_fault("DeviceService.CreateKeys", "70b3d57ed0000001", code=grpc.StatusCode.UNKNOWN)
    assert provision(inventory)[0] == 2
    assert sim.state.devices["70b3d57ed0000001"].keys is None
    assert not (provision.bundles / "70b3d57ed0000001.json").exists()
    rc, out, _ = provision(inventory)
    assert rc == 0 and "plan: 2 to create, 0 to update, 15 unchanged" in out
    key = sim.state.devices["70b3d57ed0000001"].keys.nwk_key
    assert json.loads((provision.bundles / "70b3d57ed0000001.json").read_text())["app_key"] == key


def test_a_failed_device_profile_skips_its_devices_only(sim, provision, inventory) -> None:
    sim.state.inject_fault("DeviceProfileService.Create", "citynode-bin_fill")
    rc, out, _ = provision(inventory)
    assert rc == 2
    assert "device 70b3d57ed0000002 bin-heinrich-koenig-platz-3: device profile citynode-bin_fill failed" in out
    assert sorted(sim.state.devices) == [EUIS[0], EUIS[2], EUIS[3]]
    assert provision(inventory)[0] == 0 and sorted(sim.state.devices) == EUIS


def test_lost_server_stops_the_run_instead_of_failing_every_node(sim, provision, inventory) -> None:
    sim.state.inject_fault("DeviceService.Create", "70b3d57ed0000001", code=grpc.StatusCode.UNAVAILABLE,
                           message="connection reset")
    rc, out, _ = provision(inventory)
    assert rc == 2
    assert "not reachable" in out
    assert out.count("not attempted: ChirpStack became unusable") == 11  # 3 for this node, 4x2 + ... all the rest
    assert sorted(sim.state.devices) == []


def test_key_of_a_flashed_bundle_is_kept_when_chirpstack_lost_it(sim, provision, inventory) -> None:
    assert provision(inventory)[0] == 0
    flashed = sim.state.devices["70b3d57ed0000001"].keys.nwk_key
    sim.state.devices["70b3d57ed0000001"].keys = None  # someone deleted the keys in ChirpStack's UI
    rc, out, _ = provision(inventory)
    assert rc == 0 and "nwk_key (bundle)" in out
    assert sim.state.devices["70b3d57ed0000001"].keys.nwk_key == flashed


def test_keys_are_not_printed_unless_asked(sim, provision, inventory) -> None:
    rc, out, err = provision(inventory)
    assert rc == 0
    secrets_ = [sim.state.devices[e].keys.nwk_key for e in EUIS]
    assert not any(k in out or k in err for k in secrets_)
    assert not any(k.upper() in out for k in secrets_)
    rc, out, _ = provision(inventory, "--show-keys")
    assert rc == 0
    assert all(k in out for k in secrets_)
    assert f"70b3d57ed0000003 0000000000000000 {INVENTORY_KEY} inventory bus-302-front-door" in out


def test_bad_token_is_a_clear_error(provision, inventory, monkeypatch) -> None:
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_TOKEN", "wrong-token")
    rc, out, err = provision(inventory)
    assert rc == 2
    assert "refused the API token" in err and "UNAUTHENTICATED" in err
    assert "wrong-token" not in err + out


def test_token_from_a_file(provision, inventory, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CITYNODE_CHIRPSTACK_TOKEN")
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)
    assert provision(inventory, "--token-file", str(tmp_path / "token"))[0] == 0


def test_missing_token_is_a_clear_error(provision, inventory, monkeypatch) -> None:
    monkeypatch.delenv("CITYNODE_CHIRPSTACK_TOKEN")
    rc, _, err = provision(inventory)
    assert rc == 2 and "CITYNODE_CHIRPSTACK_TOKEN" in err


def test_unknown_tenant_is_a_clear_error(sim, root, inventory, capsys) -> None:
    rc = main(["provision", str(inventory), "--server", sim.address,
               "--tenant-id", "00000000-0000-0000-0000-000000000000"])
    assert rc == 2
    assert "Object does not exist (id: 00000000-0000-0000-0000-000000000000)" in capsys.readouterr().err


def test_missing_codec_script_fails_before_touching_chirpstack(sim, provision, inventory, root) -> None:
    (root / "codecs" / "chirpstack" / "citynode.js").unlink()
    rc, _, err = provision(inventory)
    assert rc == 2
    assert "citynode.js: not found" in err and "make generate" in err
    assert sim.state.calls == []


def test_inventory_errors_stop_before_chirpstack(sim, provision, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("dev_eui,name,role,board\n70b3d57ed0000001,a,parking,esp32\n")
    rc, _, err = provision(bad)
    assert rc == 2 and "bad.csv line 2, field role: unknown role 'parking'" in err
    assert sim.state.calls == []


def test_dev_eui_registered_in_another_application_is_a_conflict(sim, provision, inventory, client) -> None:
    other_app = client.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID, name="someone-else"))
    profile = client.create_device_profile(api.DeviceProfile(tenant_id=DEFAULT_TENANT_ID, name="theirs"))
    client.create_device(api.Device(dev_eui="70b3d57ed0000004", name="theirs", application_id=other_app,
                                    device_profile_id=profile))
    rc, out, _err = provision(inventory)
    assert rc == 2
    assert "conflict" in out and f"registered in application {other_app}" in out
    assert sim.state.devices["70b3d57ed0000004"].device.name == "theirs"  # never taken over
    assert sorted(sim.state.devices) == EUIS


def test_devices_outside_the_inventory_are_left_alone(sim, provision, inventory, tmp_path) -> None:
    assert provision(inventory)[0] == 0
    smaller = tmp_path / "smaller.csv"
    smaller.write_text("\n".join(inventory.read_text().splitlines()[:3]) + "\n")
    rc, out, _ = provision(smaller)
    assert rc == 0
    assert "3 device(s) of the application are not in the inventory" in out
    assert sorted(sim.state.devices) == EUIS


def test_missing_tenant_id_is_a_clear_error(provision, inventory, capsys, root, monkeypatch) -> None:
    monkeypatch.delenv("CITYNODE_CHIRPSTACK_TENANT_ID", raising=False)
    rc = main(["provision", str(inventory), "--server", "127.0.0.1:1"])
    assert rc == 2 and "--tenant-id" in capsys.readouterr().err


def test_profiles_carry_the_checkouts_generated_codec(sim, inventory, tmp_path, monkeypatch, capsys) -> None:
    from gateway.paths import codecs_dir

    monkeypatch.delenv("CITYNODE_ROOT", raising=False)
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_TOKEN", TOKEN)
    rc = main(["provision", str(inventory), "--server", sim.address, "--tenant-id", DEFAULT_TENANT_ID,
               "--bundles", str(tmp_path / "bundles")])
    assert rc == 0, capsys.readouterr().err
    script = (codecs_dir() / "chirpstack" / "citynode.js").read_text()
    assert "decodeUplink" in script
    assert {p.payload_codec_script for p in sim.state.device_profiles.values()} == {script}
