"""Properties of the frame and MAC command layers over generated inputs (CPython, hypothesis).

Whatever the keys, address, counter, flags, FOpts and payload: a frame citynode builds parses back to
the same fields; any single flipped bit is caught by the MIC; MAC commands encode and decode to the
same fields in both directions.
"""

from __future__ import annotations

import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.paths import firmware_dir

sys.path.insert(0, str(firmware_dir() / "lib"))

from citynode.lorawan import FrameError, MICError, ReplayError
from citynode.lorawan import frames as F
from citynode.lorawan import maccmd as M

keys = st.binary(min_size=16, max_size=16)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


@st.composite
def data_frames(draw):
    uplink = draw(st.booleans())
    fport = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=255)))
    fopts = b"" if fport == 0 else draw(st.binary(max_size=15))
    payload = b"" if fport is None else draw(st.binary(max_size=200))
    return {
        "uplink": uplink,
        "confirmed": draw(st.booleans()),
        "dev_addr": draw(u32),
        "fcnt": draw(u32),
        "fport": fport,
        "fopts": fopts,
        "payload": payload,
        "adr": draw(st.booleans()),
        "ack": draw(st.booleans()),
        "flag": draw(st.booleans()),  # ADRACKReq up, FPending down
    }


def _build(nwk: bytes, app: bytes, d: dict) -> bytes:
    if d["uplink"]:
        return F.build_uplink(nwk, app, d["dev_addr"], d["fcnt"], d["fport"], d["payload"], d["fopts"],
                              d["confirmed"], adr=d["adr"], adr_ack_req=d["flag"], ack=d["ack"])
    return F.build_downlink(nwk, app, d["dev_addr"], d["fcnt"], d["fport"], d["payload"], d["fopts"],
                            d["confirmed"], adr=d["adr"], ack=d["ack"], fpending=d["flag"])


def _parse(phy: bytes, nwk: bytes, app: bytes, d: dict, last: int | None):
    parse = F.parse_uplink if d["uplink"] else F.parse_downlink
    return parse(phy, nwk, app, d["dev_addr"], last)


@settings(max_examples=60, deadline=None)
@given(nwk=keys, app=keys, d=data_frames())
def test_a_built_frame_parses_back_to_its_fields(nwk, app, d):
    phy = _build(nwk, app, d)
    last = d["fcnt"] - 1 if d["fcnt"] else None
    f = _parse(phy, nwk, app, d, last)
    assert (f.dev_addr, f.fcnt, f.fport) == (d["dev_addr"], d["fcnt"], d["fport"])
    assert (f.fopts, f.payload) == (d["fopts"], d["payload"])
    assert (f.uplink, f.confirmed, f.adr, f.ack) == (d["uplink"], d["confirmed"], d["adr"], d["ack"])
    assert (f.adr_ack_req if d["uplink"] else f.fpending) == d["flag"]
    assert f.mic_ok is True


@settings(max_examples=60, deadline=None)
@given(nwk=keys, app=keys, d=data_frames(), where=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_rejected(nwk, app, d, where, bit):
    phy = bytearray(_build(nwk, app, d))
    i = where % len(phy)
    phy[i] ^= 1 << bit
    last = d["fcnt"] - 1 if d["fcnt"] else None
    try:
        f = _parse(bytes(phy), nwk, app, d, last)
    except (MICError, FrameError, ReplayError):
        return
    raise AssertionError(f"flipped bit {bit} of byte {i} went through: {vars(f)}")


@settings(max_examples=40, deadline=None)
@given(d=data_frames(), nwk=keys, app=keys)
def test_a_frame_at_or_below_the_last_counter_is_a_replay(d, nwk, app):
    phy = _build(nwk, app, d)
    try:
        _parse(phy, nwk, app, d, d["fcnt"])
    except ReplayError as exc:
        assert f"FCnt {d['fcnt']} is not above the last accepted {d['fcnt']}" in str(exc)
    else:
        raise AssertionError("replay accepted")


def _field_values(name: str):
    strategies = {}
    for field, _off, _n, _shift, mask, kind in M.layout(name):
        if kind == "bool":
            strategies[field] = st.booleans()
        elif kind == "signed":
            top = (mask + 1) >> 1
            strategies[field] = st.integers(min_value=-top, max_value=top - 1)
        elif kind == "hz":
            strategies[field] = st.integers(min_value=0, max_value=mask).map(lambda v: v * 100)
        elif kind == "s":
            strategies[field] = st.integers(min_value=1, max_value=15)
        else:
            strategies[field] = st.integers(min_value=0, max_value=mask)
    return st.fixed_dictionaries(strategies)


ALL_COMMANDS = [(row[1], True) for row in M.TABLE] + [(row[3], False) for row in M.TABLE]


@st.composite
def command_sequences(draw):
    uplink = draw(st.booleans())
    names = [n for n, up in ALL_COMMANDS if up == uplink]
    seq = draw(st.lists(st.sampled_from(names), max_size=8))
    return uplink, [(n, draw(_field_values(n))) for n in seq]


@settings(max_examples=100, deadline=None)
@given(command_sequences())
def test_mac_commands_round_trip_in_both_directions(case):
    uplink, cmds = case
    raw = M.encode_all(cmds)
    assert len(raw) == sum(M.size(n) for n, _ in cmds)
    assert M.decode(raw, uplink) == (cmds, None)
