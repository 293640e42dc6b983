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
# RP002-1.0.3 §2.4.6: the largest EU868 application payload (DR5..DR7).
_MAX_PAYLOAD = const(242)
_UINT32_MAX = const(0xFFFFFFFF)


class EncodeError(ValueError):
    pass


class DecodeError(ValueError):
    pass


# ------------------------------------------------------------------------------------ CBOR writer

# One preallocated scratch buffer: the node encodes one payload at a time. 512 bytes hold the
# largest LoRaWAN payload (242) plus one more batch entry, written before the size check.
_SCRATCH = const(512)
_HEADROOM = const(3)  # room in front of a payload for the array head (1-2 bytes) and the header
_buf = bytearray(_SCRATCH)
_pos = 0


def _head(major, n):
    global _pos
    mt = major << 5
    if n < 24:
        _buf[_pos] = mt | n
        _pos += 1
    elif n < 0x100:
        _buf[_pos] = mt | 24
        _buf[_pos + 1] = n
        _pos += 2
    elif n < 0x10000:
        _buf[_pos] = mt | 25
        struct.pack_into(">H", _buf, _pos + 1, n)
        _pos += 3
    else:  # every field is bounded to 32 bits by the schema
        _buf[_pos] = mt | 26
        struct.pack_into(">I", _buf, _pos + 1, n)
        _pos += 5


def _int(n):
    if n >= 0:
        _head(0, n)
    else:
        _head(1, -1 - n)


def _simple(byte):
    global _pos
    _buf[_pos] = byte
    _pos += 1


# ------------------------------------------------------------------------------------ encoding


def _fail(msg_type, name, text):
    # Error text is built only here, so a good reading allocates no strings.
    raise EncodeError("%s.%s: %s" % (msg_type, name, text))


# ------------------------------------------------------------------------------------ tables

# codec_tables holds each message as one line of text (a few hundred bytes) instead of nested
# tuples (~12 KB of heap for all seven messages). A node keeps the parsed spec of the uplink it sent
# last (its role's, every cycle); device_status (daily) and the config downlink (rare) are parsed
# when used and left to the garbage collector.
_last = None  # (msg_type, spec)


def _number(text):
    return float(text) if "." in text or "e" in text else int(text)


def _parse_field(text):
    parts = text.split(" ", 3)
    kind = int(parts[1])
    head = (parts[0], kind, parts[2] == "1")
    if kind == _t.NUMBER:
        return head + tuple(_number(p) for p in parts[3].split(" "))
    if kind == _t.ENUM or kind == _t.FLAGS:
        return head + ((_t.FAULT_FLAGS if parts[3] == "*" else tuple(parts[3].split(","))),)
    if kind == _t.LIST:
        count, items = parts[3].split(" ", 1)
        return head + (tuple(_parse_field(item) for item in items.split("/")), int(count))
    return head


def _parse(line, numeric_ident):
    ident, fields = line.split("|", 1)
    ident, version = ident.split(" ")
    return (int(ident) if numeric_ident else ident, int(version),
            tuple(_parse_field(f) for f in fields.split(";")))


def uplink_spec(msg_type):
    """(fPort, schema version, fields) of an uplink message type; EncodeError if unknown."""
    global _last
    if _last is not None and _last[0] == msg_type:
        return _last[1]
    line = _t.UPLINKS.get(msg_type) if type(msg_type) is str else None
    if line is None:
        raise EncodeError("unknown message type %r" % (msg_type,))
    spec = _parse(line, True)
    _last = (msg_type, spec)
    return spec


def downlink_spec(fport):
    """(message name, schema version, fields) of the downlink on fport, or None."""
    line = _t.DOWNLINKS.get(fport) if type(fport) is int else None
    return None if line is None else _parse(line, False)


_spec = uplink_spec


def _put(msg_type, field, value):
    # Write one field's value; field = (name, kind, optional, ...) from codec_tables.
    kind = field[1]
    if kind == _t.NUMBER:
        if type(value) is bool or not isinstance(value, (int, float)):
            _fail(msg_type, field[0], "expected a number, got %r" % (value,))
        if not field[3] <= value <= field[4]:  # also rejects NaN
            _fail(msg_type, field[0], "%r outside %r..%r" % (value, field[3], field[4]))
        scaled = value * field[5]
        units = int(scaled + 0.5) if scaled >= 0 else -int(-scaled + 0.5)  # half away from zero
        _int(units - field[6])
    elif kind == _t.BOOL:
        if type(value) is not bool:
            _fail(msg_type, field[0], "expected true or false, got %r" % (value,))
        _simple(0xF5 if value else 0xF4)
    elif kind == _t.ENUM:
        if value not in field[3]:
            _fail(msg_type, field[0], "%r is not a known value" % (value,))
        _int(field[3].index(value))
    elif kind == _t.FLAGS:
        mask = 0
        for flag in value:
            if flag not in field[3]:
                _fail(msg_type, field[0], "unknown flag %r" % (flag,))
            mask |= 1 << field[3].index(flag)
        _int(mask)
    elif kind == _t.SEMVER:
        parts = value.split(".") if isinstance(value, str) else ()
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            _fail(msg_type, field[0], "expected MAJOR.MINOR.PATCH, got %r" % (value,))
        _head(4, 3)
        for p in parts:
            _int(int(p))
    else:  # LIST: a flat array of the items' values
        if not isinstance(value, (list, tuple)):
            _fail(msg_type, field[0], "expected a list")
        if len(value) > field[4]:
            _fail(msg_type, field[0], "%d items, at most %d" % (len(value), field[4]))
        items = field[3]
        _head(4, len(value) * len(items))
        for item in value:
            if len(item) != len(items):
                for sub in items:
                    if sub[0] not in item:
                        _fail(msg_type, field[0] + "." + sub[0], "missing")
                _fail(msg_type, field[0], "unknown key in item")
            for sub in items:
                if sub[0] not in item:
                    _fail(msg_type, field[0] + "." + sub[0], "missing")
                _put(msg_type, sub, item[sub[0]])


def _field(fields, name):
    for field in fields:
        if field[0] == name:
            return field
    return None


def _reading(msg_type, fields, reading, lead=None):
    # Write one reading as a CBOR array: [lead (batch time delta), values...]. A field the reading
    # lacks is null (could not be measured), except trailing optional fields, which are left out.
    faults = reading.get("faults", ())
    if not isinstance(faults, (list, tuple)):
        _fail(msg_type, "faults", "expected a list of names")
    for key in reading:
        if key != "faults" and key != "offset_s" and not _field(fields, key):
            raise EncodeError("%s: unknown field %r" % (msg_type, key))
    has_flags = False
    for fault in faults:
        if fault != "faults" and _field(fields, fault):
            if fault in reading:
                _fail(msg_type, fault, "has a value but is listed in faults")
        elif fault in _t.FAULT_FLAGS and _field(fields, "faults"):
            has_flags = True
        else:
            _fail(msg_type, "faults", "unknown fault %r" % (fault,))
    count = len(fields)
    while count and fields[count - 1][2] and fields[count - 1][0] not in reading and fields[count - 1][0] not in faults:
        count -= 1  # trailing optional fields that are simply absent
    _head(4, count + (0 if lead is None else 1))
    if lead is not None:
        _int(lead)
    for i in range(count):
        field = fields[i]
        name = field[0]
        if field[1] == _t.FLAGS and name == "faults":
            _int(_flag_mask(faults) if has_flags else 0)
        elif name in reading:
            _put(msg_type, field, reading[name])
        else:
            _simple(0xF6)  # null: could not be measured


def _flag_mask(names):
    mask = 0
    for name in names:
        if name in _t.FAULT_FLAGS:
            mask |= 1 << _t.FAULT_FLAGS.index(name)
    return mask


def _offset(msg_type, reading, previous):
    offset = reading.get("offset_s", 0)
    if type(offset) is bool or not isinstance(offset, (int, float)) or not 0 <= offset <= _UINT32_MAX:
        _fail(msg_type, "offset_s", "expected seconds >= 0, got %r" % (offset,))
    offset = int(offset + 0.5)
    if previous is not None and offset < previous:
        raise EncodeError("%s: batch readings must be newest first" % msg_type)
    return offset


def _finish(count, header, max_len, msg_type):
    # Put the array head and the header byte in front of the entries at _buf[_HEADROOM:_pos].
    items = count + 1  # the header, then the readings
    head = 1 if items < 24 else 2
    start = _HEADROOM - head - 1
    _buf[start] = 0x80 | (items if items < 24 else 24)
    if head == 2:
        _buf[start + 1] = items
    _buf[_HEADROOM - 1] = header
    if _pos - start > max_len:
        raise EncodeError("%s: payload of %d bytes exceeds %d" % (msg_type, _pos - start, max_len))
    return bytes(_buf[start:_pos])


def _check_limit(max_len):
    if not 0 < max_len <= _MAX_PAYLOAD:
        raise EncodeError("max_len must be 1..%d, got %r" % (_MAX_PAYLOAD, max_len))


def encode(msg_type, reading_or_list, max_len=DR0_MAX_PAYLOAD):
    """One reading (a dict) or a batch (a list of dicts, newest first) -> payload bytes."""
    global _pos
    _check_limit(max_len)
    fport, version, fields = _spec(msg_type)
    if isinstance(reading_or_list, dict):
        _pos = _HEADROOM - 1
        _reading(msg_type, fields, reading_or_list)
        # _reading wrote the array head at _HEADROOM - 1; move it in front of the header byte
        return _single(version, max_len, msg_type)
    if not reading_or_list:
        raise EncodeError("%s: a batch needs at least one reading" % msg_type)
    _pos = _HEADROOM
    previous = None
    for reading in reading_or_list:
        offset = _offset(msg_type, reading, previous)
        _reading(msg_type, fields, reading, 0 if previous is None else offset - previous)
        previous = offset
        if _pos - _HEADROOM > max_len:
            raise EncodeError("%s: batch exceeds %d bytes" % (msg_type, max_len))
    return _finish(len(reading_or_list), version | _t.BATCH_FLAG, max_len, msg_type)


def _single(version, max_len, msg_type):
    # A single reading is [header, values...]: the array _reading wrote lacks the header, so its
    # head (one byte: at most 23 values) gets one more item and the header goes right after it.
    start = _HEADROOM - 2
    _buf[start] = _buf[_HEADROOM - 1] + 1
    _buf[_HEADROOM - 1] = version
    if _pos - start > max_len:
        raise EncodeError("%s: payload of %d bytes exceeds %d" % (msg_type, _pos - start, max_len))
    return bytes(_buf[start:_pos])


def encode_batch(msg_type, readings, max_len=DR0_MAX_PAYLOAD):
    """Pack as many of readings (newest first) as fit in max_len bytes -> (payload, count)."""
    global _pos
    _check_limit(max_len)
    fport, version, fields = _spec(msg_type)
    _pos = _HEADROOM
    count = 0
    previous = None
    for reading in readings:
        offset = _offset(msg_type, reading, previous)
        mark = _pos
        _reading(msg_type, fields, reading, 0 if previous is None else offset - previous)
        head = 1 if count + 2 < 24 else 2  # array head for the header plus count + 1 readings
        if _pos - _HEADROOM + head + 1 > max_len:
            _pos = mark  # this one does not fit: stop before it
            break
        previous = offset
        count += 1
    if not count:
        raise EncodeError("%s: a single reading does not fit in %d bytes" % (msg_type, max_len))
    return _finish(count, version | _t.BATCH_FLAG, max_len, msg_type), count


def fport(msg_type):
    """The uplink fPort of msg_type."""
    return _spec(msg_type)[0]


# ------------------------------------------------------------------------------------ downlinks


def decode_downlink(fport, data):
    """Decode a config downlink into its settings dict; raise DecodeError for any bad input.
    (The strict CBOR reader lives in citynode.codec_downlink: a node needs it only when a downlink
    arrives, so it is not held in RAM between downlinks.)"""
    from citynode import codec_downlink

    return codec_downlink.decode_downlink(fport, data)
