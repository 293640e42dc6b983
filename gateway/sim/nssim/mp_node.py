# MicroPython program (not imported by the gateway): a LoRaWAN node on the unix port for the
# network-server simulator, the real citynode.lorawan.mac.ClassA over citynode_sim.udp.UdpRadio,
# driven line by line over stdin by gateway.sim.nssim.node.VirtualNode.
#
# First line: JSON config {"port", "dev_eui", "join_eui", "app_key" (hex), "scale", "skip_ms",
#   "adr_ack_limit"?, "adr_ack_delay"?, "rssi"?, "snr"?}.
# Then one JSON command per line; each prints one JSON line:
#   {"op": "join", "attempts": n, "wait"?}       -> {"ok", "joined", "dev_addr", "dr", "error"} or "exception"
#   {"op": "send", "port", "hex", "confirmed"}   -> {"dl": {...} or null, "joined", "dr", "sf", ...}
#   {"op": "link_check"} / {"op": "device_time"} -> {"ok": true} (asked in the next uplink)
#   {"op": "state"}                              -> the session's radio settings and counters
#   {"op": "quit"}
import json
import sys

from citynode_sim.udp import UdpRadio, VirtualClock

from citynode.lorawan import mac, region
from citynode.lorawan.session import MemoryStore, SessionStore


class NodeRegion:
    """EU868, optionally with smaller ADR backoff limits ("adr_ack_limit"/"adr_ack_delay" in the config),
    so that link loss plays out in a few uplinks in tests."""


def make_region(cfg):
    r = NodeRegion()
    for name in dir(region):
        if not name.startswith("__"):
            setattr(r, name, getattr(region, name))
    r.ADR_ACK_LIMIT = cfg.get("adr_ack_limit", region.ADR_ACK_LIMIT)
    r.ADR_ACK_DELAY = cfg.get("adr_ack_delay", region.ADR_ACK_DELAY)
    return r


def state(dev, radio):
    s = dev.session
    return {"joined": s.joined, "dev_addr": "%08x" % s.dev_addr, "dr": s.dr, "sf": region.dr_params(s.dr)[0],
            "tx_power": s.tx_power, "nb_trans": s.nb_trans, "ch_mask": s.ch_mask, "fcnt_up": s.fcnt_up,
            "fcnt_down": s.fcnt_down, "rx1_delay_ms": s.rx1_delay_ms, "rx2_dr": s.rx2_dr,
            "rx2_freq_hz": s.rx2_freq_hz, "adr_ack_cnt": s.adr_ack_cnt, "devnonce_next": s.devnonce_next,
            "max_dcycle": s.max_dcycle, "error": dev.last_error, "link_check": dev.link_check,
            "device_time": dev.device_time is not None, "rx_missed": radio.rx_missed,
            "radio_event": radio.last_event}


def main():
    cfg = json.loads(sys.stdin.readline())
    clock = VirtualClock(cfg.get("scale", 1), cfg.get("skip_ms"))
    radio = UdpRadio(port=cfg["port"], clock=clock, rssi_dbm=cfg.get("rssi", -80), snr_db=cfg.get("snr", 7.0))
    store = SessionStore(MemoryStore(), MemoryStore())
    dev = mac.ClassA(radio, store, clock.now_ms, clock.sleep_ms, region=make_region(cfg),
                     dev_eui=bytes.fromhex(cfg["dev_eui"]), join_eui=bytes.fromhex(cfg["join_eui"]),
                     app_key=bytes.fromhex(cfg["app_key"]), battery=lambda: 200, wall_s=clock.wall_s)
    print(json.dumps({"ready": True}))
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        out = {}
        try:
            if op == "join":
                dev.last_error = None
                out["ok"] = dev.join(attempts=cmd.get("attempts", 1), wait=cmd.get("wait", True))
            elif op == "send":
                dl = dev.send(cmd["port"], bytes.fromhex(cmd["hex"]), confirmed=cmd.get("confirmed", False))
                out["dl"] = None
                if dl is not None:
                    out["dl"] = {"port": dl.port, "hex": dl.data.hex(), "ack": dl.ack, "window": dl.window,
                                 "fcnt": dl.fcnt, "confirmed": dl.confirmed, "fpending": dl.fpending}
            elif op == "link_check":
                dev.request_link_check()
            elif op == "device_time":
                dev.request_device_time()
            elif op == "radio":
                radio.rssi_dbm, radio.snr_db = cmd["rssi"], cmd["snr"]
        except mac.LoRaWANError as e:
            out["exception"] = "%s: %s" % (type(e).__name__, e)
        out.update(state(dev, radio))
        print(json.dumps(out))


main()
