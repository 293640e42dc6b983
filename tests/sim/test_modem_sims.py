"""The simulated AT modems (gateway/sim/modems): a RAK3172 with RUI3 and a Seeed Wio-E5 answer AT commands
as their vendors' manuals show (RAKwireless RUI3 AT Command Manual; Seeed LoRa-E5 AT Command
Specification), error forms included, and really do LoRaWAN 1.0.x with the network-server simulator
over the UDP virtual radio: the server accepts their joins, decrypts their uplinks (FCnt, MIC) and their
downlinks come back in RX1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import count

import pytest

from gateway.sim.modems import ModemSim, ModemStack, make_modem
from gateway.sim.nssim import DeviceKeys, NetworkServerSim

JOIN_EUI = "70b3d57ed0001000"
APP_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
_eui = count(0x70B3D57ED0077000)


@pytest.fixture(scope="module")
def server() -> Iterator[NetworkServerSim]:
    sim = NetworkServerSim([], port=0)
    handle = sim.run_in_thread()
    try:
        yield sim
    finally:
        handle.stop()


def new_device(server: NetworkServerSim) -> str:
    eui = f"{next(_eui):016x}"
    server.add_device(DeviceKeys(dev_eui=eui, join_eui=JOIN_EUI, app_key=APP_KEY, name="modem", role="air_quality"))
    return eui


def modem(server: NetworkServerSim, chip: str, **faults: int) -> ModemSim:
    return make_modem(chip, ModemStack(server.port, time_scale=20), faults)


def at(m: ModemSim, line: str) -> list[str]:
    """Send one command line (CR LF), return every line the modem printed."""
    m.write(line.encode() + b"\r\n")
    return (m.read() or b"").decode().split("\r\n")[:-1]


def rak_credentials(m: ModemSim, eui: str) -> None:
    for line in ("AT+NWM=1", "AT+NJM=1", "AT+BAND=4", "AT+CLASS=A", f"AT+DEVEUI={eui.upper()}",
                 f"AT+APPEUI={JOIN_EUI.upper()}", f"AT+APPKEY={APP_KEY.hex().upper()}"):
        assert at(m, line) == ["OK"], line


def wio_credentials(m: ModemSim, eui: str) -> None:
    assert at(m, "AT+MODE=LWOTAA") == ["+MODE: LWOTAA"]
    assert at(m, "AT+DR=EU868") == ["+DR: EU868"]
    assert at(m, f'AT+ID=DevEui,"{eui}"') == ["+ID: DevEui, " + ":".join(eui.upper()[i:i + 2] for i in range(0, 16, 2))]
    assert at(m, f'AT+ID=AppEui,"{JOIN_EUI}"')[0].startswith("+ID: AppEui, 70:B3")
    assert at(m, f'AT+KEY=APPKEY,"{APP_KEY.hex()}"') == ["+KEY: APPKEY " + APP_KEY.hex().upper()]


# ---- RAK3172, RUI3 ------------------------------------------------------------------------------

def test_rak3172_joins_sends_and_receives_a_downlink_through_the_network_server(server: NetworkServerSim) -> None:
    eui = new_device(server)
    m = modem(server, "rak3172")
    assert at(m, "AT") == ["OK"]
    rak_credentials(m, eui)
    assert at(m, "AT+NJS=?") == ["AT+NJS=0", "OK"]
    assert at(m, "AT+JOIN=1:0:10:8") == ["OK", "+EVT:JOINED"]
    assert len(server.events_of("join", eui)) == 1, "the network server accepted the join"
    assert at(m, "AT+NJS=?") == ["AT+NJS=1", "OK"]
    assert at(m, "AT+DR=?") == ["AT+DR=5", "OK"]  # the join-accept's RX settings, SF7 on EU868
    assert at(m, "AT+SEND=10:A1B2C3") == ["OK", "+EVT:TX_DONE"]
    server.queue_downlink(eui, 2, b"\x01\x02")
    ok, rx, done = at(m, "AT+SEND=10:A1B2C4")
    assert (ok, done) == ("OK", "+EVT:TX_DONE")
    assert re.fullmatch(r"\+EVT:RX_1:-\d+:-?\d+:UNICAST:2:0102", rx), rx  # window:rssi:snr:UNICAST:port:hex
    ups = [e.message for e in server.events_of("up", eui)]
    assert [(u.f_port, u.f_cnt, bytes(u.data)) for u in ups] == [(10, 0, b"\xa1\xb2\xc3"), (10, 1, b"\xa1\xb2\xc4")]
    assert at(m, "AT+CFM=1") == ["OK"]
    assert at(m, "AT+SEND=11:01") == ["OK", "+EVT:SEND_CONFIRMED_OK"]  # the server acknowledged it
    m.close()


@pytest.mark.parametrize(("line", "answer"), [
    ("AT+FOO=1", "AT_ERROR"),  # unknown command
    ("ATZZ", "AT_ERROR"),
    ("AT+BAND=5", "AT_PARAM_ERROR"),  # the simulated module is the EU868 variant
    ("AT+DEVEUI=0011", "AT_PARAM_ERROR"),  # 8 bytes in hex
    ("AT+APPKEY=XYZ", "AT_PARAM_ERROR"),
    ("AT+CFM=2", "AT_PARAM_ERROR"),
    ("AT+JOIN=1:0:3:8", "AT_PARAM_ERROR"),  # retry interval 7..255 s
    ("AT+SEND=0:01", "AT_PARAM_ERROR"),  # port 1..223
    ("AT+SEND=10:0", "AT_PARAM_ERROR"),  # odd number of hex digits
    ("AT+SEND=10:01", "AT_NO_NETWORK_JOINED"),
])
def test_rak3172_error_codes(server: NetworkServerSim, line: str, answer: str) -> None:
    m = modem(server, "rak3172")
    assert at(m, line) == [answer]
    m.close()


def test_rak3172_prints_a_command_description_for_at_command_question_mark(server: NetworkServerSim) -> None:
    m = modem(server, "rak3172")
    assert at(m, "AT+DR?") == ["AT+DR: get or set the data rate", "OK"]
    m.close()


def test_rak3172_faults_busy_no_network_and_param_error(server: NetworkServerSim) -> None:
    eui = new_device(server)
    m = modem(server, "rak3172", busy=1, no_network=1, param_error=1)
    rak_credentials(m, eui)
    assert at(m, "AT+JOIN=1:0:10:1") == ["AT_BUSY_ERROR"]
    assert at(m, "AT+JOIN=1:0:10:1") == ["OK", "+EVT:JOIN_FAILED_RX_TIMEOUT"]  # no Join Accept came
    assert server.events_of("join", eui) == []
    assert at(m, "AT+JOIN=1:0:10:1") == ["OK", "+EVT:JOINED"]
    assert at(m, "AT+SEND=10:01") == ["AT_PARAM_ERROR"]
    assert at(m, "AT+SEND=10:01") == ["OK", "+EVT:TX_DONE"]
    m.close()


def test_rak3172_refuses_a_payload_longer_than_the_data_rate_carries(server: NetworkServerSim) -> None:
    eui = new_device(server)
    m = modem(server, "rak3172")
    rak_credentials(m, eui)
    at(m, "AT+JOIN=1:0:10:8")
    assert at(m, "AT+DR=0") == ["OK"]
    assert at(m, "AT+SEND=10:" + "00" * 52) == ["AT_PARAM_ERROR"]  # RP002 2.4.6: DR0 carries 51 bytes
    assert at(m, "AT+SEND=10:" + "00" * 51) == ["OK", "+EVT:TX_DONE"]
    m.close()


def test_keys_never_reach_the_command_log(server: NetworkServerSim) -> None:
    rak = modem(server, "rak3172")
    rak_credentials(rak, new_device(server))
    wio = modem(server, "wio_e5")
    wio_credentials(wio, new_device(server))
    logged = " ".join(rak.commands + wio.commands).upper()
    assert APP_KEY.hex().upper() not in logged
    assert "AT+APPKEY=<key>" in rak.commands and "AT+KEY=<key>" in wio.commands
    rak.close()
    wio.close()


# ---- Wio-E5, LoRa-E5 AT firmware -------------------------------------------------------------------

def test_wio_e5_joins_sends_and_receives_a_downlink_through_the_network_server(server: NetworkServerSim) -> None:
    eui = new_device(server)
    m = modem(server, "wio_e5")
    assert at(m, "AT") == ["+AT: OK"]
    wio_credentials(m, eui)
    answer = at(m, "AT+JOIN")
    assert answer[:3] == ["+JOIN: Start", "+JOIN: NORMAL", "+JOIN: Network joined"]
    assert answer[3].startswith("+JOIN: NetID ") and " DevAddr " in answer[3]
    assert answer[4:] == ["+JOIN: Done"]
    assert len(server.events_of("join", eui)) == 1
    assert at(m, "AT+JOIN") == ["+JOIN: Joined already"]
    assert at(m, "AT+DR") == ["+DR: DR5"]
    assert at(m, "AT+PORT=10") == ["+PORT: 10"]
    first = at(m, 'AT+MSGHEX="A1B2"')
    assert (first[0], first[-1]) == ("+MSGHEX: Start", "+MSGHEX: Done")
    assert not any("PORT:" in line for line in first)  # at most MAC commands (ADR) came down: an RXWIN line
    server.queue_downlink(eui, 2, b"\x01\x02")
    start, port, window, done = at(m, 'AT+MSGHEX="A1B3"')
    assert (start, port, done) == ("+MSGHEX: Start", '+MSGHEX: PORT: 2; RX: "0102"', "+MSGHEX: Done")
    assert re.fullmatch(r"\+MSGHEX: RXWIN1, RSSI -\d+, SNR -?\d+\.\d", window), window
    confirmed = at(m, 'AT+CMSGHEX="A1B4"')
    assert confirmed[:3] == ["+CMSGHEX: Start", "+CMSGHEX: Wait ACK", "+CMSGHEX: ACK Received"]
    assert confirmed[-1] == "+CMSGHEX: Done"
    ups = [e.message for e in server.events_of("up", eui)]
    assert [(u.f_port, u.f_cnt, bytes(u.data)) for u in ups] == [
        (10, 0, b"\xa1\xb2"), (10, 1, b"\xa1\xb3"), (10, 2, b"\xa1\xb4")]
    m.close()


@pytest.mark.parametrize(("line", "answer"), [
    ("AT+FOO", "+AT: ERROR(-10)"),  # unknown command
    ("AT+MODE=LORA", "+MODE: ERROR(-1)"),  # bad value
    ('AT+ID=DevEui,"0011"', "+ID: ERROR(-1)"),
    ("AT+PORT=0", "+PORT: ERROR(-1)"),
    ("AT+MSGHEX=A1", "+MSGHEX: ERROR(-1)"),  # the payload is quoted
    ('AT+MSGHEX="A1"', "+MSGHEX: Please join network first"),
    ('AT+CMSGHEX="A1"', "+CMSGHEX: Please join network first"),
])
def test_wio_e5_error_answers(server: NetworkServerSim, line: str, answer: str) -> None:
    m = modem(server, "wio_e5")
    assert at(m, line) == [answer]
    m.close()


def test_wio_e5_faults_busy_no_network_and_param_error(server: NetworkServerSim) -> None:
    eui = new_device(server)
    m = modem(server, "wio_e5", busy=1, no_network=1, param_error=1)
    wio_credentials(m, eui)
    assert at(m, "AT+JOIN") == ["+JOIN: LoRaWAN modem is busy"]
    assert at(m, "AT+JOIN") == ["+JOIN: Start", "+JOIN: NORMAL", "+JOIN: Join failed", "+JOIN: Done"]
    assert at(m, "AT+JOIN")[2] == "+JOIN: Network joined"
    assert at(m, 'AT+MSGHEX="01"') == ["+MSGHEX: ERROR(-1)"]
    assert at(m, 'AT+MSGHEX="01"')[-1] == "+MSGHEX: Done"
    assert at(m, "AT+DR=DR0") == ["+DR: DR0"]
    (refused,) = at(m, 'AT+MSGHEX="' + "00" * 52 + '"')
    # RP002 2.4.6: DR0 carries 51 bytes, less any MAC answers waiting for the next uplink's FOpts
    assert re.fullmatch(r"\+MSGHEX: Length error (\d+)", refused) and int(refused.split()[-1]) <= 51, refused
    m.close()


def test_an_unknown_chip_or_fault_is_refused_by_name(server: NetworkServerSim) -> None:
    stack = ModemStack(server.port)
    with pytest.raises(ValueError, match="radio.chip: no modem simulator for 'sx1276'"):
        make_modem("sx1276", stack)
    with pytest.raises(ValueError, match="modem fault 'jam'"):
        make_modem("rak3172", stack, {"jam": 1})
    stack.close()
