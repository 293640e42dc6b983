# The node configuration: config.json on the device, validated at boot.
#
# The settings a config downlink can change (interval, adr, bin_depth, ...) are validated against
# the same table the codec decodes them with (codec_tables.DOWNLINKS), so a value the network can
# send and a value a technician can write obey one set of ranges. Writes are atomic (citynode.files).
from citynode import codec_tables as _t
from citynode import files

ROLES = ("air_quality", "bin_fill", "passenger_count", "crowd_count")
CONFIG_PATH = "config.json"

# Defaults for everything but role and board. Intervals in seconds; status_interval in hours.
DEFAULTS = {
    "interval": 900,
    "status_interval": 24,
    "adr": True,
    "confirmed": False,
    "datarate": 0,
    "bin_depth": 1200,
    "mount_offset": 150,
    "fire_threshold": 60,
    "pm_warmup": 30,
    "rssi_floor": -95,
    "start_delay_max": 60,
    "queue_max": 32,
    "region": "EU868",
    "activation": "otaa",
}
# Per-role interval defaults: buses report often, bins rarely.
ROLE_INTERVALS = {"air_quality": 600, "bin_fill": 3600, "passenger_count": 300, "crowd_count": 900}


class ConfigError(ValueError):
    """A config field is missing or invalid; `field` names it."""

    def __init__(self, field, message="missing"):
        super().__init__("config %s: %s" % (field, message))
        self.field = field


def _setting_fields():
    from citynode import codec

    for fport in _t.DOWNLINKS:
        return codec.downlink_spec(fport)[2]
    return ()


def check_setting(name, value):
    """Validate one downlink-settable setting; returns the value or raises ConfigError."""
    for field in _setting_fields():
        if field[0] != name:
            continue
        if field[1] == _t.BOOL:
            if type(value) is not bool:
                raise ConfigError(name, "expected true or false, got %r" % (value,))
        elif type(value) is bool or not isinstance(value, int) or not field[3] <= value <= field[4]:
            raise ConfigError(name, "expected an integer %r..%r, got %r" % (field[3], field[4], value))
        return value
    raise ConfigError(name, "not a setting")


def _hex(config, name, length):
    value = config.get(name)
    if value is None:
        return
    if not isinstance(value, str) or len(value) != length * 2:
        raise ConfigError(name, "expected %d hex digits" % (length * 2))
    try:
        int(value, 16)
    except ValueError:
        raise ConfigError(name, "expected %d hex digits" % (length * 2))


def _fuota(config):
    """The optional FUOTA keys (docs/design/fuota.md): gen_app_key and fuota_pub above (hex), and the
    package versions the device profile names, the data-block size and the decoder's column budget."""
    versions = config.get("fuota_versions")
    if versions is not None and (not isinstance(versions, list) or len(versions) != 3
                                 or any(v not in (1, 2) or type(v) is bool for v in versions)):
        raise ConfigError("fuota_versions", "expected [TS003, TS004, TS005] versions, each 1 or 2")
    for name, lo, hi in (("fuota_block_max", 1024, 1048576), ("fuota_max_missing", 1, 4096)):
        value = config.get(name)
        if value is not None and (type(value) is bool or not isinstance(value, int) or not lo <= value <= hi):
            raise ConfigError(name, "expected an integer %d..%d, got %r" % (lo, hi, value))


def validate(raw):
    """A complete, checked config dict from raw (as read from config.json); raises ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError("config.json", "expected a JSON object")
    role = raw.get("role")
    if role not in ROLES:
        raise ConfigError("role", "expected one of %s, got %r" % (", ".join(ROLES), role))
    if not isinstance(raw.get("board"), str) or not raw["board"]:
        raise ConfigError("board", "expected a board name such as heltec_wifi_lora_32_v3")
    config = dict(DEFAULTS)
    config["interval"] = ROLE_INTERVALS[role]
    config.update(raw)
    settable = [f[0] for f in _setting_fields()]
    for name in settable:
        if name in config and name not in ("occupancy_reset", "reboot"):
            check_setting(name, config[name])
    if config["activation"] not in ("otaa", "abp"):
        raise ConfigError("activation", "expected otaa or abp")
    if config["region"] != "EU868":
        raise ConfigError("region", "only EU868 is supported")
    for name, length in (("dev_eui", 8), ("join_eui", 8), ("app_key", 16), ("dev_addr", 4),
                         ("nwk_s_key", 16), ("app_s_key", 16), ("gen_app_key", 16), ("fuota_pub", 32)):
        _hex(config, name, length)
    _fuota(config)
    for name in ("start_delay_max", "queue_max"):
        value = config[name]
        if type(value) is bool or not isinstance(value, int) or not 0 <= value <= 3600:
            raise ConfigError(name, "expected an integer 0..3600, got %r" % (value,))
    if config["queue_max"] < 1:
        raise ConfigError("queue_max", "must be at least 1")
    return config


def load(path=CONFIG_PATH):
    """Read and validate config.json; a missing or unreadable file is a ConfigError too."""
    raw = files.read(path)
    if raw is None:
        raise ConfigError("config.json", "missing or unreadable at %s" % path)
    return validate(raw)


def apply_settings(config, settings, path=CONFIG_PATH):
    """Merge downlink settings into config and save atomically; returns the names that changed.

    One-shot actions (occupancy_reset, reboot) are not stored.
    """
    changed = []
    for name in settings:
        value = check_setting(name, settings[name])
        if name in ("occupancy_reset", "reboot"):
            continue
        if config.get(name) != value:
            config[name] = value
            changed.append(name)
    if changed:
        stored = files.read(path, {})
        for name in changed:
            stored[name] = config[name]
        files.write(path, stored)
    return changed
