# Config downlink decoding for citynode.codec (see there): a strict CBOR reader and the settings
# table check. Imported when a downlink arrives; errors are citynode.codec.DecodeError.
from citynode import codec_tables as _t
from citynode.codec import DecodeError, downlink_spec
from citynode.compat import const

_MAX_DEPTH = const(4)  # config needs 2 levels; a bound keeps a hostile downlink off the small ESP32 stack


def _read(data, pos, depth=0):
    # Strict CBOR reader for downlinks: shortest integer heads, definite lengths, no tags,
    # floats or strings, simple values false/true/null only. Returns (value, new position).
    if depth > _MAX_DEPTH:
        raise DecodeError("CBOR nested too deeply")
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
            item, pos = _read(data, pos, depth + 1)
            items.append(item)
        return items, pos
    out = {}
    last = -1
    for _ in range(n):
        key, pos = _read(data, pos, depth + 1)
        if type(key) is not int or key <= last:
            raise DecodeError("setting indexes must be rising integers")
        last = key
        out[key], pos = _read(data, pos, depth + 1)
    return out, pos


def decode_downlink(fport, data):
    """Decode a config downlink into its settings dict; raise citynode.codec.DecodeError for any bad input."""
    spec = downlink_spec(fport)
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
