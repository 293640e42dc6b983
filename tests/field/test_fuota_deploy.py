"""``citynode fuota deploy`` / ``status`` against the ChirpStack API simulator's FuotaService.

``deploy`` creates and starts one deployment per device profile among the chosen devices; ``status``
shows each device's steps and result as ChirpStack records them (here written by hand into the
simulator's rows, as its FUOTA flow would: the flow itself is tested in
tests/sim/test_nssim_fuota_deployment.py). Bad input is one line and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chirpstack_api import api, common
from google.protobuf import timestamp_pb2

from gateway.cli import main
from gateway.field import fuota
from gateway.field.chirpstack_client import ChirpStackClient
from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

TOKEN = "test-api-token"
AIR = ["70b3d57ed0000a01", "70b3d57ed0000a02"]
BINS = ["70b3d57ed0000b01"]
NO_FUOTA = "70b3d57ed0000c01"


@pytest.fixture
def package(tmp_path: Path) -> Path:
    for version, body in (("0.1.0", b"A1"), ("0.2.0", b"A2")):
        root = tmp_path / version
        (root / "lib").mkdir(parents=True)
        (root / "lib" / "app.mpy").write_bytes(body)
        (root / "VERSION").write_text(version)
    key = fuota.generate_keypair()
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = fuota.build_package(tmp_path / "0.1.0", tmp_path / "0.2.0", load_pem_private_key(key.private_pem, None))
    out = tmp_path / "app-0.2.0.cnup"
    out.write_bytes(data)
    return out


@pytest.fixture
def fleet(client: ChirpStackClient, monkeypatch: pytest.MonkeyPatch, sim: ChirpStackSimulator) -> str:
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_TOKEN", TOKEN)
    monkeypatch.setenv("CITYNODE_CHIRPSTACK_SERVER", sim.address)
    app = client.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID, name="citynode"))
    alp = api.AppLayerParams(ts003_version=api.TS003_V100, ts003_f_port=202, ts004_version=api.TS004_V100,
                             ts004_f_port=201, ts005_version=api.TS005_V100, ts005_f_port=200)
    profiles = {}
    for name, params in (("citynode-air", alp), ("citynode-bins", alp), ("plain", None)):
        p = api.DeviceProfile(tenant_id=DEFAULT_TENANT_ID, name=name, region=common.EU868)
        if params is not None:
            p.app_layer_params.CopyFrom(params)
        profiles[name] = client.create_device_profile(p)
    for euis, prof, district in ((AIR, "citynode-air", "north"), (BINS, "citynode-bins", "south"),
                                 ([NO_FUOTA], "plain", "south")):
        for e in euis:
            client.create_device(api.Device(dev_eui=e, name=f"node-{e[-3:]}", application_id=app,
                                            device_profile_id=profiles[prof], tags={"district": district}))
    return app


def _deployments(sim: ChirpStackSimulator) -> dict[str, list[str]]:
    return {s.deployment.name: sorted(s.devices) for s in sim.state.fuota.values()}


def test_deploy_starts_one_deployment_per_profile(sim: ChirpStackSimulator, fleet: str, package: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuota", "deploy", str(package), "--application", fleet, "--devices", "profile:citynode-air",
                 "--redundancy", "30"]) == 0
    assert main(["fuota", "deploy", str(package), "--application", fleet, "--devices", BINS[0],
                 "--dr", "3"]) == 0
    assert _deployments(sim) == {"citynode 0.2.0 citynode-air": AIR, "citynode 0.2.0 citynode-bins": BINS}
    for s in sim.state.fuota.values():
        d = s.deployment
        assert s.started_at is not None and [j.job for j in s.jobs] == ["CREATE_MC_GROUP"]
        assert d.payload == package.read_bytes()
        assert dict(d.on_complete_set_device_tags) == {"app_version": "0.2.0"}
        assert (d.multicast_group_type, d.multicast_frequency) == (api.CLASS_C, 869525000)
        assert d.request_fragmentation_session_status == api.AFTER_SESSION_TIMEOUT
        # ChirpStack's rule: the DR's largest downlink payload - 3, at most the payload's length
        # (EU868: 242 bytes at DR5, 115 at DR3; the package is 224 bytes)
        assert d.fragmentation_fragment_size == min(len(d.payload), 239 if d.multicast_dr == 5 else 112)
    air = next(s.deployment for s in sim.state.fuota.values() if "air" in s.deployment.name)
    assert (air.fragmentation_redundancy_percentage, air.multicast_dr) == (30, 5)
    out = capsys.readouterr().out
    assert "0.1.0 -> 0.2.0" in out and "citynode fuota status" in out


def test_a_file_of_dev_euis_and_a_tag_filter_choose_the_same_devices(sim: ChirpStackSimulator, fleet: str,
                                                                     package: Path, tmp_path: Path) -> None:
    listing = tmp_path / "north.txt"
    listing.write_text(f"# the north district\n{AIR[0]}\n{AIR[1].upper()}\n")
    assert main(["fuota", "deploy", str(package), "--application", fleet, "--devices", str(listing),
                 "--name", "by-file"]) == 0
    assert main(["fuota", "deploy", str(package), "--application", fleet, "--devices", "tag:district=north",
                 "--name", "by-tag"]) == 0
    assert _deployments(sim) == {"by-file": AIR, "by-tag": AIR}


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ("tag:district", "expected tag:KEY=VALUE"),
        ("tag:district=west", "matches no device"),
        ("70b3d57ed0000fff", "not in the application: 70b3d57ed0000fff"),
        ("node-a01", "neither a DevEUI"),
        ("all", "'plain' does not enable TS004 and TS005"),
    ],
)
def test_bad_device_choices_are_one_line_and_exit_2(sim: ChirpStackSimulator, fleet: str, package: Path,
                                                   capsys: pytest.CaptureFixture[str], devices: str,
                                                   message: str) -> None:
    assert main(["fuota", "deploy", str(package), "--application", fleet, "--devices", devices]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sim.state.fuota == {}  # nothing created


def test_a_file_that_is_not_a_package_is_refused(fleet: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    assert main(["fuota", "deploy", str(bogus), "--application", fleet, "--devices", "all"]) == 2
    assert "not a citynode update package" in capsys.readouterr().err


def test_an_unknown_application_is_chirpstacks_not_found(fleet: str, package: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ghost = "00000000-0000-0000-0000-000000000001"
    assert main(["fuota", "deploy", str(package), "--application", ghost, "--devices", "all"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NOT_FOUND" in err[0]


def test_status_shows_each_devices_steps_and_result(sim: ChirpStackSimulator, fleet: str, package: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuota", "deploy", str(package), "--application", fleet, "--devices", "profile:citynode-air"]) == 0
    dep_id = next(iter(sim.state.fuota))
    capsys.readouterr()
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    with sim.state.lock:  # what the FUOTA flow records (gateway.sim.nssim.fuota)
        done, failed = (sim.state.fuota[dep_id].devices[e] for e in AIR)
        for fld in ("mc_group_setup_completed_at", "frag_session_setup_completed_at", "mc_session_completed_at",
                    "frag_status_completed_at", "completed_at"):
            getattr(done, fld).CopyFrom(now)
        failed.mc_group_setup_completed_at.CopyFrom(now)
        failed.error_msg = "FragSessionSetupReq timeout."
        sim.state.fuota[dep_id].jobs.append(api.FuotaDeploymentJob(job="FRAG_STATUS", warning_msg=""))
    assert main(["fuota", "status", dep_id]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"deployment {dep_id} 'citynode 0.2.0 citynode-air': running, job FRAG_STATUS")
    assert "1 complete, 1 failed, 0 in progress" in out[0]
    assert out[1].split() == [AIR[0], "steps", "4/4", "complete"]
    assert out[2].split()[:4] == [AIR[1], "steps", "1/4", "failed:"]
    assert out[2].endswith("FragSessionSetupReq timeout.")


def test_status_of_an_unknown_deployment_is_one_line(fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuota", "status", "00000000-0000-0000-0000-00000000beef"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Object does not exist" in err[0]
