"""The Class A MAC against an independent implementation, the npm package lora-packet.

lora-packet plays the network: it builds the join-accept and a downlink with MAC commands; the citynode
MAC on the MicroPython unix port joins with that accept, persists its session in files between runs (the
node "sleeps" between the steps), applies the commands and sends uplinks; lora-packet then decodes every
frame the MAC put on air (join-request, uplinks with FOpts answers, a confirmed uplink) and checks MICs
with keys it derived itself. Needs Node.js and `make nodedeps`.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location("mac_mpy", Path(__file__).with_name("mac_mpy.py"))
MPY = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MPY)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """citynode compiled to .mpy, as deployed (mac_mpy.py explains the heap)."""
    return MPY.compile_firmware(tmp_path_factory.mktemp("mpy"))

ROOT = Path(__file__).resolve().parents[3]
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"
BRIDGE = Path(__file__).with_name("lorapacket.js")
FAKES = Path(__file__).with_name("mac_fakes.py").read_text()

pytestmark = pytest.mark.node

APPKEY = "2b7e151628aed2a6abf7158809cf4f3c"  # = mac_fakes.APP_KEY
APPNONCE, NETID, DEVADDR = "00a1b2", "000013", "260b5678"
CFLIST = "184f84e85684b85e84886684586e8400"  # 867.1, 867.3, 867.5, 867.7, 867.9 MHz, type 0


def lorapacket(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "lora-packet").is_dir():
        pytest.fail("needs Node.js and lora-packet: run `make nodedeps`", pytrace=False)
    proc = subprocess.run([node, str(BRIDGE)], input=json.dumps(requests), capture_output=True, text=True,
                          check=False, timeout=60, env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for q, r in zip(requests, results, strict=True):
        assert "error" not in r, f"lora-packet rejected {q}: {r['error']}"
    return results


NODE = r"""
import json
from citynode.lorawan.mac import ClassA
from citynode.lorawan.session import SessionStore, FileStore
from citynode.lorawan import frames
clock = FakeClock()
net = Network()
radio = FakeRadio(clock, net)
store = SessionStore(FileStore(DIR + "/flash.rec"), FileStore(DIR + "/rtc.rec"))
mac = ClassA(radio, store, clock, clock.sleep, dev_eui=DEV_EUI, join_eui=JOIN_EUI, app_key=APP_KEY, battery=lambda: 77)
"""


def on_node(firmware: Path, tmp_path: Path, body: str) -> Any:
    code = FAKES + NODE.replace("DIR", json.dumps(str(tmp_path))) + body
    return json.loads(MPY.run(code, firmware).strip().splitlines()[-1])


def test_mac_frames_and_lora_packet_frames_interoperate(firmware: Path, tmp_path: Path) -> None:
    # 1. lora-packet builds the join-accept the network will send.
    ja = lorapacket([{"op": "build_join_accept", "appkey": APPKEY, "appnonce": APPNONCE, "netid": NETID,
                      "devaddr": DEVADDR, "dlsettings": 0, "rxdelay": 1, "cflist": CFLIST}])[0]["phy"]
    # 2. The MAC joins with it and sends a first uplink.
    r1 = on_node(firmware, tmp_path, f"""
sent = []  # what went on air; the join-accept from lora-packet comes back in RX1 (JOIN_ACCEPT_DELAY1)
def capture(phy, freq, sf, bw):
    sent.append(phy.hex())
    if frames.mtype_of(phy) == frames.JOIN_REQUEST:
        return [(5000, freq, net._dr(sf, bw), bytes.fromhex("{ja}"))]
    return []
net.on_uplink = capture
ok = mac.join()
mac.request_link_check()
mac.send(10, b"\\x01\\x02\\x03")
s = mac.session
print(json.dumps({{"ok": ok, "sent": sent, "nwk": s.nwk_skey.hex(), "app": s.app_skey.hex(), "devaddr": "%08x" % s.dev_addr,
                  "channels": [c[0] for c in s.channels[:8]]}}))
""")
    assert r1["ok"] and r1["devaddr"] == DEVADDR
    assert r1["channels"][3:] == [867100000, 867300000, 867500000, 867700000, 867900000]
    join_req, up0 = r1["sent"]
    jr = lorapacket([{"op": "decode", "phy": join_req, "appkey": APPKEY}])[0]
    assert jr["mtype"] == "Join Request" and jr["mic_ok"] is True
    assert (jr["appeui"], jr["deveui"], jr["devnonce"]) == ("70b3d57ed0000001", "0004a30b001c0530", "0000")
    keys = lorapacket([{"op": "session_keys", "appkey": APPKEY, "netid": NETID, "appnonce": APPNONCE,
                        "devnonce": jr["devnonce"]}])[0]
    assert (keys["nwkskey"], keys["appskey"]) == (r1["nwk"], r1["app"])  # both sides derived the same keys

    # 3. lora-packet builds a confirmed downlink with LinkADRReq (DR3, TXPower 2, channels 0-7) + DevStatusReq.
    dn = lorapacket([{"op": "build_data", "mtype": "Confirmed Data Down", "devaddr": DEVADDR, "fcnt": 0,
                      "fopts": "0332ff000106", "fport": 2, "payload": "0a0b", "nwkskey": keys["nwkskey"],
                      "appskey": keys["appskey"]}])[0]["phy"]
    # 4. After "deep sleep" (a new process; the session comes back from the RTC/flash files) the MAC sends
    #    a confirmed uplink, gets the downlink in RX1, then answers in the next uplink.
    r2 = on_node(firmware, tmp_path, f"""
sent = []
def capture(phy, freq, sf, bw):
    sent.append(phy.hex())
    if len(sent) == 1:
        return [(1000, freq, net._dr(sf, bw), bytes.fromhex("{dn}"))]
    return []
net.on_uplink = capture
dl = mac.send(10, b"hello", confirmed=True)
mac.send(10, b"again")
print(json.dumps({{"sent": sent, "port": dl.port, "data": dl.data.hex(), "dr": mac.datarate,
                  "power": mac.session.tx_power, "mask": mac.session.ch_mask, "joined": mac.joined}}))
""")
    assert r2["joined"] and r2["port"] == 2 and r2["data"] == "0a0b"
    assert (r2["dr"], r2["power"], r2["mask"]) == (3, 2, 0xFF)
    up1, up2 = r2["sent"]
    dec = lorapacket([
        {"op": "decode", "phy": up0, "nwkskey": keys["nwkskey"], "appskey": keys["appskey"], "fcnt": 0},
        {"op": "decode", "phy": up1, "nwkskey": keys["nwkskey"], "appskey": keys["appskey"], "fcnt": 1},
        {"op": "decode", "phy": up2, "nwkskey": keys["nwkskey"], "appskey": keys["appskey"], "fcnt": 2},
    ])
    assert all(d["mic_ok"] is True for d in dec)
    assert [d["fcnt16"] for d in dec] == [0, 1, 2]
    assert [d["mtype"] for d in dec] == ["Unconfirmed Data Up", "Confirmed Data Up", "Unconfirmed Data Up"]
    assert [d["payload"] for d in dec] == ["010203", "68656c6c6f", "616761696e"]
    assert dec[0]["fopts"] == "02"  # LinkCheckReq piggy-backed
    assert dec[2]["ack"] is True  # acknowledges the confirmed downlink
    # LinkADRAns with all three ACK bits, then DevStatusAns: battery 77, SNR 7 dB.
    assert dec[2]["fopts"] == "0307" + "064d07"
