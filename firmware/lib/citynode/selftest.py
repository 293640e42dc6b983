# The node self-test, run by `citynode flash` (verify step) and `citynode check`: every sensor read
# once, the radio asked to respond, the battery measured. Prints one line:
#   SELFTEST {"version", "dev_eui", "role", "board", "checks": [{"name", "ok", "value"|"error"}]}
# A check with "not_fitted": true is a field or part this node has not got (ok, and no value): the
# SDS011 measures no PM1.0, the console link of a sim board has no radio.
import json

import citynode
from citynode import config as _config

# Fields a particulate sensor cannot measure, by config pm_sensor. SDS011 datasheet V1.3: the sensor
# reports PM2.5 and PM10 only; the PMS5003 also reports PM1.0.
_NOT_FITTED = {"sds011": ("pm1_0",)}


def run():
    report = {"version": ".".join(str(p) for p in citynode.VERSION), "checks": []}
    checks = report["checks"]
    try:
        raw = _config.files.read(_config.CONFIG_PATH, {})
        if isinstance(raw, dict):  # shown even when the config is invalid: role and board as written
            report.update(dev_eui=raw.get("dev_eui"), role=raw.get("role"), board=raw.get("board"))
    except Exception:
        pass
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
    else:  # the console stand-in (a sim board without network): no radio to test, not a pass
        checks.append({"name": "radio", "ok": True, "not_fitted": True,
                       "value": "no radio: %s prints uplinks, sends nothing" % type(link).__name__})
    print("SELFTEST " + json.dumps(report))
    return report


def role_checks(role):
    """Role.selftest(): measure once; one check for the reading and one per missing field."""
    checks = []
    try:
        reading = role.measure()
    except Exception as exc:  # selftest reports, never raises
        return [{"name": role.msg_type, "ok": False, "error": str(exc)}]
    kind = getattr(role, "pm_kind", None)
    unfitted = _NOT_FITTED.get(kind, ())
    missing = [name for name in reading.get("faults", []) if name not in unfitted]
    values = {k: v for k, v in reading.items() if k != "faults"}
    checks.append({"name": role.msg_type, "ok": not missing, "value": values})
    for name in missing:
        checks.append({"name": name, "ok": False, "error": "could not be measured"})
    for name in unfitted:
        checks.append({"name": name, "ok": True, "not_fitted": True, "value": "not fitted (%s)" % kind})
    return checks
