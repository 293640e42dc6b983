"""The ingest's MQTT 3.1.1 connection (gateway.service.ingest.mqtt_wire), packet by packet.

Two kinds of peer: a scripted TCP server that sends exactly the bytes a test needs (fragments, several
packets in one chunk, protocol violations), and the real mosquitto (TLS + password, QoS 2, keep-alive).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import aiomqtt
import pytest

from gateway.service.config import TlsConfig
from gateway.service.ingest.mqtt import tls_context
from gateway.service.ingest.mqtt_wire import (
    MqttConnection,
    MqttError,
    Publish,
    encode_packet,
    publish_packet,
    remaining_length,
)

CONNACK_OK = bytes((0x20, 2, 0, 0))
CONNACK_SESSION = bytes((0x20, 2, 1, 0))


# ---------------------------------------------------------------------------------- scripted broker


class Script:
    """A one-connection TCP server: reads CONNECT, answers with ``script(reader, writer)``."""

    def __init__(
        self, script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self.script = script
        self.received = bytearray()  # what the client sent after CONNECT
        self.server: asyncio.base_events.Server | None = None
        self.done = asyncio.Event()

    async def __aenter__(self) -> Script:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_packet(reader)  # CONNECT
            try:
                await self.script(reader, writer)
            finally:
                self.done.set()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def connect(self, **kwargs: object) -> MqttConnection:
        return await MqttConnection.open("127.0.0.1", self.port, client_id="t", timeout=5, **kwargs)  # type: ignore[arg-type]


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole packet (fixed header included) from the client."""
    first = await reader.readexactly(1)
    length, shift, header = 0, 0, bytearray(first)
    while True:
        byte = (await reader.readexactly(1))[0]
        header.append(byte)
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return bytes(header) + await reader.readexactly(length)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ encoding


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_the_table_of_the_standard(n: int, encoded: bytes) -> None:
    # MQTT 3.1.1, 2.2.3, table 2.4: the boundaries of 1, 2, 3 and 4 length bytes.
    assert remaining_length(n) == encoded


def test_remaining_length_refuses_what_four_bytes_cannot_hold() -> None:
    with pytest.raises(ValueError):
        remaining_length(268_435_456)


# ------------------------------------------------------------------------------------------ receiving


def test_a_publish_split_at_every_byte_arrives_whole() -> None:
    packet = publish_packet("application/a/device/0004a30b001c0530/event/up", b"\x01\x02" * 200, 1, 7)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        for i in range(len(packet)):
            writer.write(packet[i : i + 1])
            await writer.drain()
        await reader.read()  # until the client closes

    async def main() -> None:
        async with Script(script) as broker:
            conn = await broker.connect()
            [msg] = await conn.receive(10)
            assert msg == Publish("application/a/device/0004a30b001c0530/event/up", b"\x01\x02" * 200, 1, 7)
            await conn.close()

    run(main())


def test_many_packets_in_one_chunk_come_out_as_one_batch_in_order() -> None:
    packets = b"".join(publish_packet(f"t/{i}", bytes([i]), 1, i + 1) for i in range(50))

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_SESSION + packets)
        await reader.read()

    async def main() -> None:
        async with Script(script) as broker:
            conn = await broker.connect()
            assert conn.session_present
            got: list[Publish] = []
            while len(got) < 50:
                got += await conn.receive(20)
            assert [p.topic for p in got] == [f"t/{i}" for i in range(50)]
            assert [p.packet_id for p in got] == list(range(1, 51))
            await conn.close()

    run(main())


def test_receive_takes_at_most_max_n() -> None:
    packets = b"".join(publish_packet("t", b"x", 0) for _ in range(10))

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK + packets)
        await reader.read()

    async def main() -> None:
        async with Script(script) as broker:
            conn = await broker.connect()
            await asyncio.sleep(0.2)  # let all ten arrive (the assertion does not depend on it)
            first = await conn.receive(4)
            assert len(first) <= 4
            rest: list[Publish] = []
            while len(first) + len(rest) < 10:
                rest += await conn.receive(100)
            assert all(p.qos == 0 and p.packet_id == 0 for p in first + rest)
            await conn.close()

    run(main())


def test_acknowledgements_follow_arrival_order_and_qos() -> None:
    # QoS 1 -> PUBACK, QoS 2 -> PUBREC, QoS 0 -> nothing; PUBREL -> PUBCOMP (MQTT 3.1.1 4.3, 4.6).
    sent = [publish_packet("t", b"a", 1, 5), publish_packet("t", b"b", 0), publish_packet("t", b"c", 2, 9)]
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK + b"".join(sent))
        seen.append(await read_packet(reader))
        seen.append(await read_packet(reader))
        writer.write(bytes((0x62, 2, 0, 9)))  # PUBREL for packet 9
        seen.append(await read_packet(reader))
        await reader.read()

    async def main() -> None:
        async with Script(script) as broker:
            conn = await broker.connect()
            batch: list[Publish] = []
            while len(batch) < 3:
                batch += await conn.receive(10)
            conn.ack(batch)
            while len(seen) < 3:
                await asyncio.sleep(0.01)
            await conn.close()

    run(main())
    assert seen == [b"\x40\x02\x00\x05", b"\x50\x02\x00\x09", b"\x70\x02\x00\x09"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "malformed remaining length"),
        (encode_packet(0x30, b"\x00\x02\xff\xfe" + b"x"), "not UTF-8"),
        (encode_packet(0x32, b"\x00\x05ab"), "shorter than its topic"),
        (encode_packet(0x36, b"\x00\x01t\x00\x01"), "QoS 3"),
        (encode_packet(0x10, b"\x00"), "unexpected MQTT packet type 1"),
    ],
)
def test_a_broker_breaking_the_protocol_ends_the_connection_with_the_reason(bad: bytes, message: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK + publish_packet("ok", b"1", 1, 1) + bad)
        await reader.read()

    async def main() -> None:
        async with Script(script) as broker:
            conn = await broker.connect()
            with pytest.raises(MqttError, match=message):
                while True:
                    await conn.receive(10)
            await conn.close()

    run(main())


@pytest.mark.parametrize(
    ("code", "reason"), [(1, "protocol version"), (4, "bad user name"), (5, "not authorized")]
)
def test_a_refused_connect_names_the_return_code(code: int, reason: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes((0x20, 2, 0, code)))
        await reader.read()

    async def main() -> None:
        async with Script(script) as broker:
            with pytest.raises(MqttError, match=reason):
                await broker.connect()

    run(main())


def test_a_closed_port_is_a_clear_error() -> None:
    async def main() -> None:
        async with Script(lambda r, w: asyncio.sleep(0)) as broker:
            port = broker.port
        with pytest.raises(MqttError, match="cannot connect to the broker"):
            await MqttConnection.open("127.0.0.1", port, client_id="t", timeout=2)

    run(main())


def test_a_lost_connection_ends_receive() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with Script(script) as broker:
            conn = await broker.connect()
            with pytest.raises(MqttError, match="closed the connection|lost"):
                await conn.receive(10)
            await conn.close()

    run(main())


def test_the_subscribe_packet_and_a_refused_subscription() -> None:
    got: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(CONNACK_OK)
        packet = await read_packet(reader)
        got.append(packet)
        writer.write(bytes((0x90, 3)) + packet[2:4] + b"\x80")  # SUBACK: failure
        await reader.read()

    async def main() -> None:
        async with Script(script) as broker:
            conn = await broker.connect()
            with pytest.raises(MqttError, match="refused the subscription"):
                await conn.subscribe("$share/g/application/+/device/+/event/+", 1)
            await conn.close()

    run(main())
    topic = b"$share/g/application/+/device/+/event/+"
    assert got == [encode_packet(0x82, b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x01")]


# ------------------------------------------------------------------------------------ real mosquitto


@pytest.mark.mqtt
def test_publish_at_qos1_is_acknowledged_by_mosquitto(mosquitto) -> None:
    # The benchmark's publisher: pipelined QoS 1 publishes, flush() waits for every PUBACK.
    async def main() -> None:
        pub = await MqttConnection.open(mosquitto.host, mosquitto.port, client_id=f"p-{uuid.uuid4().hex[:6]}")
        for i in range(500):
            pub.publish("wire/acked", bytes([i % 256]), 1)
        await pub.flush()
        assert pub._wire.outstanding == 0
        with pytest.raises(ValueError):
            pub.publish("wire/acked", b"", 2)
        await pub.close()

    run(main())


@pytest.mark.mqtt
def test_tls_with_a_wrong_password_is_refused_by_mosquitto(mosquitto) -> None:
    async def main() -> None:
        with pytest.raises(
            MqttError, match="refused the connection: (bad user name or password|not authorized)"
        ):
            await MqttConnection.open(
                mosquitto.host,
                mosquitto.tls_port,
                client_id=f"bad-{uuid.uuid4().hex[:6]}",
                username=mosquitto.username,
                password="wrong",
                tls=tls_context(TlsConfig(ca=str(mosquitto.tls["ca"]))),
            )

    run(main())


@pytest.mark.mqtt
@pytest.mark.parametrize("qos", [1, 2])
def test_mosquitto_delivers_exactly_what_was_published_and_takes_the_acks(mosquitto, qos: int) -> None:
    topic = f"wire/{uuid.uuid4().hex}"

    async def main() -> None:
        sub = await MqttConnection.open(
            mosquitto.host, mosquitto.port, client_id=f"s-{topic[-6:]}", keepalive=1
        )
        assert await sub.subscribe(topic + "/#", qos) == qos
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier=f"p-{topic[-6:]}") as pub:
            for i in range(300):
                await pub.publish(f"{topic}/{i}", i.to_bytes(2, "big"), qos=qos)
        got: list[Publish] = []
        while len(got) < 300:
            batch = await sub.receive(64)
            sub.ack(batch)
            got += batch
        await asyncio.sleep(2.5)  # idle past two keep-alive periods: PINGREQ keeps the session up
        assert sub.error is None
        await sub.close()
        assert [int.from_bytes(p.payload, "big") for p in got] == list(range(300))
        assert {p.qos for p in got} == {qos}

    run(main())
