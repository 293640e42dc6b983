# The node self-test, run by `citynode flash` (verify step) and `citynode check`: every sensor read
# once, the radio asked to respond, the battery measured. Prints one line:
#   SELFTEST {"version", "dev_eui", "role", "board", "checks": [{"name", "ok", "value"|"error"}]}
import json

import citynode
from citynode import config as _config


def run():
    report = {"version": ".".join(str(p) for p in citynode.VERSION), "checks": []}
    checks = report["checks"]
    try:
        cfg = _config.load()
        report.update(dev_eui=cfg.get("dev_eui"), role=cfg["role"], board=cfg["board"])
        checks.append({"name": "config", "ok": True, "value": "valid"})
    except _config.ConfigError as exc:
        checks.append({"name": "config", "ok": False, "error": str(exc)})
        print("SELFTEST " + json.dumps(report))
        return report
    try:
        from citynode.run import build

        cfg, board, hal, clock, role, link, battery = build(cfg)
    except Exception as exc:
        checks.append({"name": "hardware", "ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})
        print("SELFTEST " + json.dumps(report))
        return report
    checks.extend(role.selftest())
    if battery is not None:
        try:
            checks.append({"name": "battery", "ok": True, "value": round(battery(), 2)})
        except Exception as exc:
            checks.append({"name": "battery", "ok": False, "error": str(exc)})
    probe = getattr(link, "probe", None)
    if probe is not None:
        try:
            checks.append({"name": "radio", "ok": True, "value": probe()})
        except Exception as exc:
            checks.append({"name": "radio", "ok": False, "error": str(exc)})
    else:
        checks.append({"name": "radio", "ok": True, "value": type(link).__name__})
    print("SELFTEST " + json.dumps(report))
    return report
