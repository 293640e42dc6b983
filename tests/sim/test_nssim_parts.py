"""The simulator's parts: device registry, ADR decisions, the virtual radio's datagrams, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import cli
from gateway.errors import ConfigError
from gateway.sim.nssim import AdrState, adr_decision, load_devices
from gateway.sim.nssim._firmware import udp

BUNDLE = {
    "format": "citynode-node-bundle/1",
    "dev_eui": "70B3D57ED0060001",
    "join_eui": "70b3d57ed0000000",
    "app_key": "2b7e151628aed2a6abf7158809cf4f3c",
    "name": "bin-7",
    "role": "bin_fill",
}


def test_devices_from_a_bundle_directory_and_a_json_list(tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "70b3d57ed0060001.json").write_text(json.dumps(BUNDLE))
    listing = tmp_path / "devices.json"
    listing.write_text(json.dumps([{"dev_eui": "00-00-00-00-00-00-00-02", "join_eui": "0000000000000000",
                                    "app_key": "00" * 16, "tags": {"site": "depot"}}]))
    a, b = load_devices([bundles, listing])
    assert (a.dev_eui, a.name, a.role, a.device_profile_name, dict(a.tags)) == (
        "70b3d57ed0060001", "bin-7", "bin_fill", "citynode-bin_fill", {"role": "bin_fill"})
    assert (b.dev_eui, b.name, dict(b.tags)) == ("0000000000000002", "0000000000000002", {"site": "depot"})
    assert "2b7e" not in repr(a)  # keys never in logs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "x"}', "neither a provisioning bundle"),
        ("[1]", "entry 0: expected an object"),
        ('[{"dev_eui": "0102", "join_eui": "00", "app_key": "00"}]', "entry 0: dev_eui must be 8 bytes"),
        ('[{"dev_eui": "zz00000000000000"}]', "entry 0: dev_eui 'zz00000000000000' is not hexadecimal"),
        ('[{"dev_eui": "0000000000000001", "join_eui": "0000000000000000"}]', "entry 0: app_key is missing"),
        ("{", "not JSON"),
    ],
)
def test_bad_device_files_name_the_file_entry_and_field(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "d.json"
    f.write_text(content)
    with pytest.raises(ConfigError, match=message) as e:
        load_devices([f])
    assert str(f) in str(e.value)


def test_a_dev_eui_listed_twice_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "d.json"
    f.write_text(json.dumps([BUNDLE, BUNDLE]))
    with pytest.raises(ConfigError, match="dev_eui 70b3d57ed0060001 is listed twice"):
        load_devices([f])


# (current DR, TXPower, NbTrans), best SNR dB, SF of the current DR, loss -> expected; margin 10 dB, 3 dB steps.
# Demodulation floors from the SX1276 datasheet Table 13: SF7 -7.5 dB ... SF12 -20 dB.
ADR_CASES = [
    ((0, 0, 1), 10.0, 12, 0.0, (5, 1, 1)),  # 20 dB margin: 6 steps: DR0 -> DR5, then TXPower 1
    ((0, 0, 1), -10.0, 12, 0.0, (0, 0, 1)),  # exactly the margin: nothing to gain
    ((3, 0, 1), 2.0, 9, 0.0, (4, 0, 1)),  # 4.5 dB: one step
    ((5, 0, 1), 7.0, 7, 0.0, (5, 1, 1)),  # at the highest DR: the step lowers the power
    ((5, 3, 1), -6.0, 7, 0.0, (5, 1, 1)),  # -8.5 dB: two (truncated) steps back up in power
    ((5, 1, 1), -20.0, 7, 0.0, (5, 0, 1)),  # far below: power to the maximum, never the DR down
    ((5, 7, 1), 40.0, 7, 0.0, (5, 7, 1)),  # nothing left to lower
    ((5, 0, 1), -2.5, 7, 0.07, (5, 0, 1)),  # 5-10 % loss keeps NbTrans 1
    ((5, 0, 2), -2.5, 7, 0.20, (5, 0, 3)),  # 20 % loss -> 3
    ((5, 0, 3), -2.5, 7, 0.01, (5, 0, 2)),  # <5 % at NbTrans 3 -> 2
]


@pytest.mark.parametrize(("cur", "snr", "sf", "loss", "expected"), ADR_CASES)
def test_adr_decisions(cur: tuple[int, int, int], snr: float, sf: int, loss: float,
                       expected: tuple[int, int, int]) -> None:
    assert adr_decision(AdrState(*cur), snr, sf, loss=loss) == AdrState(*expected)


def test_datagram_format_round_trip_and_errors() -> None:
    header = {"v": 1, "dir": "up", "freq_hz": 868100000, "sf": 7, "bw_hz": 125000, "tmst_ms": 5}
    data = udp.encode_datagram(header, b"\x40\x00\n\x01")
    assert data.split(b"\n", 1)[0] == json.dumps(header).encode()
    assert udp.decode_datagram(data) == (header, b"\x40\x00\n\x01")
    with pytest.raises(ValueError, match="header v must be 1"):
        udp.decode_datagram(b'{"v": 2}\n')
    with pytest.raises(ValueError, match="lacks 'tmst_ms'"):
        udp.decode_datagram(b'{"v": 1, "dir": "up", "freq_hz": 1, "sf": 7, "bw_hz": 125000}\n')


def test_virtual_clock_advances_by_what_is_waited() -> None:
    c = udp.VirtualClock(scale=1000, skip_ms=100)
    c.sleep_ms(50)
    c.sleep_ms(60000)  # sleeps 100 ms of node time for real (0.1 ms), skips the rest
    assert c.now_ms() == 60050
    with pytest.raises(udp.UdpRadioError, match="scale"):
        udp.VirtualClock(scale=0)


def test_a_steady_virtual_clock_is_scale_times_real_time_since_its_epoch_and_survives_a_reboot() -> None:
    import time

    epoch = time.time_ns() // 1_000_000 - 2000  # the fleet started two real seconds ago
    c = udp.VirtualClock(scale=10, skip_ms=100, epoch_ms=epoch)
    start = c.now_ms()
    assert start >= 20000  # 2 s x 10: time passed although the node never waited
    c.sleep_ms(300)  # waits until that node time (skip_ms is ignored: no jumps)
    assert c.now_ms() >= start + 300
    assert c.wall_s() == epoch // 1000 + c.now_ms() // 1000
    rebooted = udp.VirtualClock(scale=10, epoch_ms=epoch)  # a new process, the same epoch (sim.json)
    assert rebooted.now_ms() >= c.now_ms()  # goes on where it was, as an RTC would


def test_cli_needs_devices_and_runs_for_a_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ns-sim", "--port", "0"]) == 2
    assert "--devices: give at least one" in capsys.readouterr().err
    f = tmp_path / "d.json"
    f.write_text(json.dumps([BUNDLE]))
    assert cli.main(["ns-sim", "--devices", str(f), "--port", "0", "--duration", "0.2"]) == 0
    err = capsys.readouterr().err
    assert "with 1 devices (a simulator for demos and tests, not a network server)" in err
    assert "ns-sim: 0 joins, 0 uplinks forwarded, 0 frames rejected" in err
