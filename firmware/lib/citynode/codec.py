# citynode payload codec for the node: encodes uplinks, decodes the config downlink.
#
# Driven by the tables in codec_tables.py, generated from codecs/schema.json (the contract shared
# with the gateway and the ChirpStack codec). No extra packages: a small CBOR writer for the subset
# the contract uses, and a strict reader for downlinks. Imports under CPython too.
#
#   encode("bin_fill", {"distance": 850, ...})          -> bytes, one reading
#   encode("bin_fill", [newest, older, ...])            -> bytes, a batch (each reading has "offset_s")
#   encode_batch("bin_fill", readings, max_len)         -> (bytes, count): as many readings as fit
#   decode_downlink(2, data)                            -> {"interval": 900, ...}
#
# Values out of range raise EncodeError naming the field: never a silent wrap-around.
import struct

from citynode import codec_tables as _t
from citynode.compat import const

# RP002-1.0.3 §2.4.6: EU868 DR0..DR2 carry at most 51 bytes of application payload.
DR0_MAX_PAYLOAD = const(51)
_UINT32_MAX = const(0xFFFFFFFF)
_OMIT = object()  # marker for a trailing optional field left out


class EncodeError(ValueError):
    pass


class DecodeError(ValueError):
    pass


# ------------------------------------------------------------------------------------ CBOR writer


def _head(buf, major, n):
    mt = major << 5
    if n < 24:
        buf.append(mt | n)
    elif n < 0x100:
        buf.append(mt | 24)
        buf.append(n)
    elif n < 0x10000:
        buf.append(mt | 25)
        buf.extend(struct.pack(">H", n))
    elif n <= _UINT32_MAX:
        buf.append(mt | 26)
        buf.extend(struct.pack(">I", n))
    else:
        buf.append(mt | 27)
        buf.extend(struct.pack(">Q", n))


def _write(buf, value):
    if value is None:
        buf.append(0xF6)
    elif value is True:
        buf.append(0xF5)
    elif value is False:
        buf.append(0xF4)
    elif isinstance(value, int):
        if value >= 0:
            _head(buf, 0, value)
        else:
            _head(buf, 1, -1 - value)
    elif isinstance(value, (list, tuple)):
        _head(buf, 4, len(value))
        for item in value:
            _write(buf, item)
    else:  # dict: only the config downlink uses maps
        _head(buf, 5, len(value))
        for key in sorted(value):
            _write(buf, key)
            _write(buf, value[key])


# ------------------------------------------------------------------------------------ encoding


def _spec(msg_type):
    spec = _t.UPLINKS.get(msg_type)
    if spec is None:
        raise EncodeError("unknown message type %r" % (msg_type,))
    return spec


def _value(where, field, value):
    kind = field[1]
    if kind == _t.NUMBER:
        if type(value) is bool or not isinstance(value, (int, float)):
            raise EncodeError("%s: expected a number, got %r" % (where, value))
        if not field[3] <= value <= field[4]:  # also rejects NaN
            raise EncodeError("%s: %r outside %r..%r" % (where, value, field[3], field[4]))
        scaled = value * field[5]
        units = int(scaled + 0.5) if scaled >= 0 else -int(-scaled + 0.5)  # half away from zero
        return units - field[6]
    if kind == _t.BOOL:
        if type(value) is not bool:
            raise EncodeError("%s: expected true or false, got %r" % (where, value))
        return value
    if kind == _t.ENUM:
        if value not in field[3]:
            raise EncodeError("%s: %r is not a known value" % (where, value))
        return field[3].index(value)
    if kind == _t.FLAGS:
        mask = 0
        for flag in value:
            if flag not in field[3]:
                raise EncodeError("%s: unknown flag %r" % (where, flag))
            mask |= 1 << field[3].index(flag)
        return mask
    if kind == _t.SEMVER:
        parts = value.split(".") if isinstance(value, str) else ()
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            raise EncodeError("%s: expected MAJOR.MINOR.PATCH, got %r" % (where, value))
        return [int(p) for p in parts]
    # LIST: a flat array of the items' values
    if not isinstance(value, (list, tuple)):
        raise EncodeError("%s: expected a list" % where)
    if len(value) > field[4]:
        raise EncodeError("%s: %d items, at most %d" % (where, len(value), field[4]))
    flat = []
    for item in value:
        for sub in field[3]:
            if sub[0] not in item:
                raise EncodeError("%s.%s: missing" % (where, sub[0]))
            flat.append(_value(where + "." + sub[0], sub, item[sub[0]]))
        if len(item) != len(field[3]):
            raise EncodeError("%s: unknown key in item" % where)
    return flat


def _reading(name, fields, reading):
    faults = reading.get("faults", ())
    if not isinstance(faults, (list, tuple)):
        raise EncodeError("%s.faults: expected a list of names" % name)
    for key in reading:
        if key != "faults" and key != "offset_s" and not _field(fields, key):
            raise EncodeError("%s: unknown field %r" % (name, key))
    flags = []
    for fault in faults:
        if fault != "faults" and _field(fields, fault):
            if fault in reading:
                raise EncodeError("%s.%s: has a value but is listed in faults" % (name, fault))
        elif fault in _t.FAULT_FLAGS and _field(fields, "faults"):
            flags.append(fault)
        else:
            raise EncodeError("%s.faults: unknown fault %r" % (name, fault))
    out = []
    for field in fields:
        fname = field[0]
        if field[1] == _t.FLAGS and fname == "faults":
            out.append(_value(name + ".faults", field, flags))
        elif fname in reading:
            out.append(_value(name + "." + fname, field, reading[fname]))
        elif field[2] and fname not in faults:
            out.append(_OMIT)
        else:
            out.append(None)  # could not be measured
    while out and out[-1] is _OMIT:
        out.pop()
    for i in range(len(out)):
        if out[i] is _OMIT:
            out[i] = None
    return out


def _field(fields, name):
    for field in fields:
        if field[0] == name:
            return field
    return None


def _batch_entry(name, fields, reading, previous_offset):
    offset = reading.get("offset_s", 0)
    if type(offset) is bool or not isinstance(offset, (int, float)) or not 0 <= offset <= _UINT32_MAX:
        raise EncodeError("%s.offset_s: expected seconds >= 0, got %r" % (name, offset))
    offset = int(offset + 0.5)
    if previous_offset is not None and offset < previous_offset:
        raise EncodeError("%s: batch readings must be newest first" % name)
    delta = 0 if previous_offset is None else offset - previous_offset
    buf = bytearray()
    values = _reading(name, fields, reading)
    _head(buf, 4, len(values) + 1)
    _write(buf, delta)
    for value in values:
        _write(buf, value)
    return buf, offset


def encode(msg_type, reading_or_list, max_len=DR0_MAX_PAYLOAD):
    """One reading (a dict) or a batch (a list of dicts, newest first) -> payload bytes."""
    fport, version, fields = _spec(msg_type)
    buf = bytearray()
    if isinstance(reading_or_list, dict):
        values = _reading(msg_type, fields, reading_or_list)
        _head(buf, 4, len(values) + 1)
        _write(buf, version)
        for value in values:
            _write(buf, value)
    else:
        if not reading_or_list:
            raise EncodeError("%s: a batch needs at least one reading" % msg_type)
        _head(buf, 4, len(reading_or_list) + 1)
        _write(buf, version | _t.BATCH_FLAG)
        previous = None
        for reading in reading_or_list:
            entry, previous = _batch_entry(msg_type, fields, reading, previous)
            buf.extend(entry)
    if len(buf) > max_len:
        raise EncodeError("%s: payload of %d bytes exceeds %d" % (msg_type, len(buf), max_len))
    return bytes(buf)


def encode_batch(msg_type, readings, max_len=DR0_MAX_PAYLOAD):
    """Pack as many of readings (newest first) as fit in max_len bytes -> (payload, count)."""
    fport, version, fields = _spec(msg_type)
    body = bytearray()
    count = 0
    previous = None
    for reading in readings:
        entry, offset = _batch_entry(msg_type, fields, reading, previous)
        # 1 header byte + array head (1 byte up to 23 items, 2 bytes after that)
        size = 1 + (1 if count + 1 < 24 else 2) + len(body) + len(entry)
        if size > max_len:
            break
        body.extend(entry)
        previous = offset
        count += 1
    if not count:
        raise EncodeError("%s: a single reading does not fit in %d bytes" % (msg_type, max_len))
    buf = bytearray()
    _head(buf, 4, count + 1)
    _write(buf, version | _t.BATCH_FLAG)
    buf.extend(body)
    return bytes(buf), count


def fport(msg_type):
    """The uplink fPort of msg_type."""
    return _spec(msg_type)[0]


# ------------------------------------------------------------------------------------ downlinks


def _read(data, pos):
    # Strict CBOR reader for downlinks: shortest integer heads, definite lengths, no tags,
    # floats or strings, simple values false/true/null only. Returns (value, new position).
    if pos >= len(data):
        raise DecodeError("truncated CBOR")
    ib = data[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 0x1F
    if major == 7:
        if ai == 20:
            return False, pos
        if ai == 21:
            return True, pos
        if ai == 22:
            return None, pos
        raise DecodeError("CBOR simple value or float not allowed")
    if major in (2, 3, 6):
        raise DecodeError("CBOR strings and tags not allowed")
    if ai < 24:
        n = ai
    elif ai <= 27:
        size = 1 << (ai - 24)
        if pos + size > len(data):
            raise DecodeError("truncated CBOR")
        n = int.from_bytes(data[pos : pos + size], "big")
        pos += size
        if n < (24 if size == 1 else 1 << (4 * size)):
            raise DecodeError("CBOR integer not in shortest form")
    else:
        raise DecodeError("CBOR indefinite lengths not allowed")
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if n > len(data) - pos:
        raise DecodeError("CBOR length exceeds payload")
    if major == 4:
        items = []
        for _ in range(n):
            item, pos = _read(data, pos)
            items.append(item)
        return items, pos
    out = {}
    last = -1
    for _ in range(n):
        key, pos = _read(data, pos)
        if type(key) is not int or key <= last:
            raise DecodeError("CBOR map keys must be rising integers")
        last = key
        out[key], pos = _read(data, pos)
    return out, pos


def decode_downlink(fport, data):
    """Decode a config downlink into its settings dict; raise DecodeError for any bad input."""
    spec = _t.DOWNLINKS.get(fport)
    if spec is None:
        raise DecodeError("no citynode downlink on fPort %r" % (fport,))
    name, version, fields = spec
    value, pos = _read(data, 0)
    if pos != len(data):
        raise DecodeError("%s: bytes after the CBOR array" % name)
    if type(value) is not list or len(value) != 2 or type(value[1]) is not dict:
        raise DecodeError("%s: expected [header, {setting: value}]" % name)
    if value[0] != version:
        raise DecodeError("%s: unsupported header %r" % (name, value[0]))
    settings = {}
    for key in value[1]:
        if not 0 <= key < len(fields):
            raise DecodeError("%s: unknown setting index %d" % (name, key))
        field = fields[key]
        raw = value[1][key]
        where = name + "." + field[0]
        if field[1] == _t.BOOL:
            if type(raw) is not bool:
                raise DecodeError("%s: expected true or false" % where)
            settings[field[0]] = raw
            continue
        if type(raw) is not int:
            raise DecodeError("%s: expected an integer" % where)
        units = raw + field[6]
        number = units if field[5] == 1 else units / field[5]
        if not field[3] <= number <= field[4]:
            raise DecodeError("%s: %r outside %r..%r" % (where, number, field[3], field[4]))
        settings[field[0]] = number
    if not settings:
        raise DecodeError("%s: no settings" % name)
    return settings
