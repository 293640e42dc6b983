"""AT-modem LoRaWAN backend (citynode.lorawan_at) against simulated RAK3172 (RUI3) and Wio-E5 modems.

The simulated modems (radiosim_modem.py) answer like the real firmware: per-command OK / error codes,
join and send results arriving seconds later, busy answers, downlinks, ACKs, duty-cycle refusals.
"""

from __future__ import annotations

import pytest

SETUP = (
    "import json\nfrom radiosim_modem import make_modem\n"
    "from citynode.lorawan_at import LinkError, NotJoinedError, ModemBusyError, DutyCycleError, ModemTimeoutError, LinkConfigError\n"
    "KEYS = ('70B3D57ED0000001', '0000000000000000', '2B7E151628AED2A6ABF7158809CF4F3C')\n"
)
MODEMS = ["rak3172", "wioe5"]


def run_modem(runner, kind, body, **sim):
    args = ", ".join(f"{k}={v!r}" for k, v in sim.items())
    return runner.json(SETUP + f"link, sim = make_modem({kind!r}{', ' + args if args else ''})\n" + body)


@pytest.mark.parametrize("kind", MODEMS)
def test_join_send_and_receive_a_downlink(both, kind):
    got = run_modem(
        both,
        kind,
        "link.probe()\nlink.setup(*KEYS)\nj = link.join()\n"
        "sim.downlinks.append((2, b'\\x01\\x02\\x03'))\n"
        "d = link.send(10, b'\\xa1\\x02')\n"
        "n = link.send(10, b'\\xa1\\x03')\n"
        "print(json.dumps({'joined': j, 'dr': link.datarate, 'max': link.max_payload(), 'down': [d[0], list(d[1])],"
        " 'none': n, 'uplinks': [[p, list(b), c] for p, b, c in sim.uplinks], 'rssi': link.last_rssi, 'snr': link.last_snr}))",
    )
    assert got["joined"] is True
    assert (got["dr"], got["max"]) == (5, 222)  # RP002 EU868: DR5 carries 222 bytes
    assert got["down"] == [2, [1, 2, 3]]
    assert got["none"] is None
    assert got["uplinks"] == [[10, [0xA1, 0x02], False], [10, [0xA1, 0x03], False]]
    assert got["rssi"] == (-70 if kind == "rak3172" else -45)


def test_rak3172_command_sequence(mpy):
    got = run_modem(mpy, "rak3172", "link.setup(*KEYS)\nlink.join()\nlink.send(10, b'x', confirmed=True)\nprint(json.dumps(sim.uart.written))")
    assert got == [
        "AT+NWM=1", "AT+NJM=1", "AT+BAND=4", "AT+CLASS=A", "AT+DEVEUI=70B3D57ED0000001", "AT+APPEUI=0000000000000000",
        "AT+APPKEY=2B7E151628AED2A6ABF7158809CF4F3C", "AT+ADR=1", "AT+JOIN=1:0:10:8", "AT+DR=?", "AT+CFM=1",
        "AT+SEND=10:78", "AT+DR=?",
    ]


def test_wio_e5_command_sequence(mpy):
    got = run_modem(mpy, "wioe5", "link.setup(*KEYS)\nlink.join()\nlink.send(10, b'x', confirmed=True)\nprint(json.dumps(sim.uart.written))")
    assert got == [
        "AT+MODE=LWOTAA", "AT+DR=EU868", "AT+CLASS=A", 'AT+ID=DevEui,"70B3D57ED0000001"', 'AT+ID=AppEui,"0000000000000000"',
        'AT+KEY=APPKEY,"2B7E151628AED2A6ABF7158809CF4F3C"', "AT+ADR=ON", "AT+JOIN", "AT+DR", "AT+PORT=10",
        'AT+CMSGHEX="78"', "AT+DR",
    ]


@pytest.mark.parametrize("kind", MODEMS)
def test_join_failure_returns_false(mpy, kind):
    got = run_modem(mpy, kind, "print(json.dumps([link.join(), link.joined, link.datarate]))", join_ok=False)
    assert got == [False, False, None]


@pytest.mark.parametrize("kind", MODEMS)
def test_busy_modem_is_retried_with_backoff(mpy, kind):
    got = run_modem(mpy, kind, "print(json.dumps([link.join(), link.busy_retries]))", busy_next=2)
    assert got == [True, 2]


@pytest.mark.parametrize(("kind", "code"), [("rak3172", "AT_BUSY_ERROR"), ("wioe5", "busy")])
def test_modem_busy_through_every_retry_raises(mpy, kind, code):
    got = run_modem(
        mpy, kind, "try:\n    link.join()\nexcept ModemBusyError as e:\n    print(json.dumps([str(e), e.code]))", busy_next=99
    )
    assert "still" in got[0] and got[1] == code


@pytest.mark.parametrize(("kind", "code"), [("rak3172", "AT_NO_NETWORK_JOINED"), ("wioe5", "Please join network first")])
def test_modem_that_lost_the_session_reports_not_joined(mpy, kind, code):
    got = run_modem(
        mpy,
        kind,
        "link.joined = True\n"  # the node thinks it is joined (e.g. restored state) but the modem rebooted
        "try:\n    link.send(10, b'x')\nexcept NotJoinedError as e:\n    print(json.dumps([e.code, link.joined]))",
    )
    assert got == [code, False]


@pytest.mark.parametrize("kind", MODEMS)
def test_send_before_join_is_refused_without_talking_to_the_modem(mpy, kind):
    got = run_modem(
        mpy, kind, "try:\n    link.send(10, b'x')\nexcept NotJoinedError as e:\n    print(json.dumps([str(e), sim.uart.written]))"
    )
    assert got[0].endswith("join() first") and got[1] == []


@pytest.mark.parametrize("kind", MODEMS)
def test_confirmed_uplink_without_ack(mpy, kind):
    got = run_modem(mpy, kind, "link.join()\nd = link.send(10, b'x', confirmed=True)\nprint(json.dumps([d, link.last_ack]))", ack=False)
    assert got == [None, False]


@pytest.mark.parametrize("kind", MODEMS)
def test_confirmed_uplink_with_ack_and_downlink(mpy, kind):
    got = run_modem(
        mpy,
        kind,
        "link.join()\nsim.downlinks.append((2, b'\\x0f'))\nd = link.send(11, b'x', confirmed=True)\n"
        "print(json.dumps([d[0], list(d[1]), link.last_ack]))",
    )
    assert got == [2, [15], True]


@pytest.mark.parametrize("kind", MODEMS)
def test_adr_change_updates_datarate_and_max_payload(mpy, kind):
    got = run_modem(
        mpy, kind, "link.join()\na = link.max_payload()\nsim.dr_after_send = 3\nlink.send(10, b'x')\n"
        "print(json.dumps([a, link.datarate, link.max_payload()]))",
    )
    assert got == [222, 3, 115]


# RP002-1.0.3 EU868 maximum payload N by data rate
@pytest.mark.parametrize(("dr", "n"), [(0, 51), (1, 51), (2, 51), (3, 115), (4, 222), (5, 222), (6, 222)])
def test_max_payload_table(mpy, dr, n):
    got = run_modem(mpy, "rak3172", "link.join()\nprint(json.dumps([link.max_payload(), link.datarate]))", dr=dr)
    assert got == [n, dr]


@pytest.mark.parametrize("kind", MODEMS)
def test_payload_longer_than_the_data_rate_allows_names_the_field(mpy, kind):
    got = run_modem(
        mpy, kind, "link.join()\ntry:\n    link.send(10, bytes(52))\nexcept LinkConfigError as e:\n    print(json.dumps([e.field, str(e)]))", dr=0
    )
    assert got == ["data", "data: length must be 1..51 bytes at DR0 (got 52)"]


@pytest.mark.parametrize(("kind", "code"), [("rak3172", "AT_PARAM_ERROR"), ("wioe5", "Length error 0")])
def test_modem_side_length_error(mpy, kind, code):
    # The node believes DR5, the modem has fallen back to DR0 (e.g. ADR backoff it did not report yet).
    got = run_modem(
        mpy, kind, "link.join()\nsim.dr = 0\ntry:\n    link.send(10, bytes(100))\nexcept LinkError as e:\n    print(json.dumps(e.code))"
    )
    assert got == code


@pytest.mark.parametrize(("kind", "wait"), [("rak3172", None), ("wioe5", 13469)])
def test_duty_cycle_refusal(mpy, kind, wait):
    got = run_modem(
        mpy, kind, "link.join()\nsim.duty_cycle_ms = 13469\ntry:\n    link.send(10, b'x')\nexcept DutyCycleError as e:\n    print(json.dumps(e.wait_ms))"
    )
    assert got == wait


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ("link.send(0, b'x')", "fport"),
        ("link.send(224, b'x')", "fport"),
        ("link.send(10, b'')", "data"),
        ("link.send(10, 'text')", "data"),
        ("link.setup('70B3D57ED000000', KEYS[1], KEYS[2])", "deveui"),
        ("link.setup(KEYS[0], 'zz' * 8, KEYS[2])", "joineui"),
        ("link.setup(KEYS[0], KEYS[1], KEYS[2][:-2])", "appkey"),
    ],
)
@pytest.mark.parametrize("kind", MODEMS)
def test_bad_arguments_name_the_field(mpy, kind, call, field):
    got = run_modem(
        mpy, kind, f"link.joined = True\ntry:\n    {call}\nexcept LinkConfigError as e:\n    print(json.dumps([e.field, str(e)]))"
    )
    assert got[0] == field
    assert "2B7E1516" not in got[1], "a key must never appear in an error message"


@pytest.mark.parametrize(("kind", "hint"), [("rak3172", "115200 baud"), ("wioe5", "9600 baud")])
def test_silent_modem_gives_a_wiring_hint(mpy, kind, hint):
    got = run_modem(
        mpy, kind, "sim.handle = lambda line: None\ntry:\n    link.probe()\nexcept ModemTimeoutError as e:\n    print(json.dumps(str(e)))"
    )
    assert "no answer to AT: check UART TX/RX wiring" in got and hint in got


def test_wio_e5_long_datarate_answer(mpy):
    got = run_modem(mpy, "wioe5", "link.join()\nprint(json.dumps(link.datarate))", dr_format="long", dr=4)
    assert got == 4


def test_wio_e5_already_joined(mpy):
    got = run_modem(mpy, "wioe5", "sim.joined = True\nprint(json.dumps([link.join(), link.joined]))")
    assert got == [True, True]
