"""A lean MQTT 3.1.1 subscriber connection for the ingest's hot path.

Why not paho/aiomqtt here: paho parses every packet through several layers of Python (a read of two
bytes, then of the rest, a message object, a callback, aiomqtt's queue and future per message), about
two thirds of the gateway's CPU per uplink when it was profiled (bench/RESULTS.md, gateway throughput).
This module is an asyncio :class:`asyncio.Protocol` that parses every complete packet out of each
chunk the socket delivers, hands the ingest whole batches of PUBLISH packets, and writes the
acknowledgements of a committed batch with one ``write``. The gateway's other MQTT uses (the MQTT sink,
downlinks on the command topic) publish a few messages and keep aiomqtt.

What it implements, from the MQTT 3.1.1 standard (OASIS, 2014; section numbers below):

* CONNECT with client id, clean-session flag, keep-alive, user name and password (3.1); CONNACK and
  its return codes (3.2.2.3); TLS through the ``ssl`` context (port 8883 by convention).
* SUBSCRIBE / SUBACK, failure code 0x80 (3.8, 3.9). Topic filters with ``$share/<group>/`` are passed
  through: mosquitto applies shared subscriptions to 3.1.1 clients too.
* PUBLISH at QoS 0, 1 and 2 (3.3): QoS 1 is acknowledged with PUBACK, QoS 2 with PUBREC, both only
  when the ingest calls :meth:`MqttConnection.ack` (after its store committed the messages), in the
  order the PUBLISH packets arrived (4.6); PUBREL is answered with PUBCOMP (4.3.3).
* PINGREQ every half keep-alive; a broker silent for 1.5 keep-alives is taken as gone (3.1.2.10).
* DISCONNECT on a clean close (3.14). Protocol violations by the broker (malformed lengths, a topic that
  is not UTF-8, unexpected packet types) end the connection with :class:`MqttError`.

Back-pressure: at most ``max_pending`` received and not yet taken messages; beyond that the socket is
not read (the broker keeps the rest, bounded by its ``max_inflight_messages`` for QoS > 0).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.errors import CitynodeError

__all__ = ["MqttConnection", "MqttError", "Publish", "encode_packet", "remaining_length"]

# Control packet types (2.2.1), already shifted into the high nibble of the first byte.
_CONNECT = 0x10
_CONNACK = 0x20
_PUBLISH = 0x30
_PUBACK = 0x40
_PUBREC = 0x50
_PUBREL = 0x60
_PUBCOMP = 0x70
_SUBSCRIBE = 0x82  # flags 0010 are mandatory (3.8.1)
_SUBACK = 0x90
_PINGREQ = 0xC0
_PINGRESP = 0xD0
_DISCONNECT = 0xE0

_MAX_REMAINING = 268_435_455  # 4 bytes of variable length encoding (2.2.3)

CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttError(CitynodeError):
    """The broker refused us, broke the protocol, or the connection was lost."""


@dataclass(frozen=True, slots=True)
class Publish:
    """One received PUBLISH packet (3.3). ``packet_id`` is 0 at QoS 0."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    dup: bool = False
    retain: bool = False


# ----------------------------------------------------------------------------------------- encoding


def remaining_length(n: int) -> bytes:
    """The variable length encoding of ``n`` (2.2.3): 7 bits per byte, high bit = more bytes follow."""
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string is at most 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def encode_packet(first: int, body: bytes) -> bytes:
    """Fixed header (first byte and remaining length) + ``body``."""
    return bytes((first,)) + remaining_length(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    clean_session: bool,
    keepalive: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT (3.1) for protocol level 4 (3.1.1)."""
    flags = 0x02 if clean_session else 0
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    elif password is not None:
        raise ValueError("MQTT 3.1.1 needs a user name with a password (3.1.2.9)")
    header = _string("MQTT") + bytes((4, flags)) + keepalive.to_bytes(2, "big")
    return encode_packet(_CONNECT, header + payload)


def subscribe_packet(packet_id: int, topic_filter: str, qos: int) -> bytes:
    """SUBSCRIBE (3.8) of one topic filter."""
    return encode_packet(_SUBSCRIBE, packet_id.to_bytes(2, "big") + _string(topic_filter) + bytes((qos,)))


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int = 0, retain: bool = False) -> bytes:
    """PUBLISH (3.3); used by the benchmark's publisher and the tests."""
    body = _string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return encode_packet(_PUBLISH | (qos << 1) | int(retain), body)


# ------------------------------------------------------------------------------------------ protocol


class _Wire(asyncio.Protocol):
    """Bytes in, packets out; every complete packet in a chunk is parsed before control returns."""

    def __init__(self, max_pending: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.publishes: deque[Publish] = deque()
        self.max_pending = max_pending
        self.paused = False
        self.arrived = asyncio.Event()  # publishes waiting, or the connection is gone
        self.connack: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self.suback: dict[int, asyncio.Future[int]] = {}
        self.error: MqttError | None = None
        self.outstanding = 0  # our own QoS 1 publishes not yet acknowledged by the broker
        self.last_heard = asyncio.get_running_loop().time()

    # asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(
            MqttError(f"connection to the broker lost: {exc}" if exc else "the broker closed the connection")
        )

    def data_received(self, data: bytes) -> None:
        self.last_heard = asyncio.get_running_loop().time()
        buf = self.buffer
        buf += data
        pos = 0
        end = len(buf)
        publishes = self.publishes
        got = False
        try:
            while end - pos >= 2:
                first = buf[pos]
                # Remaining length (2.2.3): 1 to 4 bytes, 7 bits each, low-order first.
                length = 0
                shift = 0
                i = pos + 1
                complete = False
                while i < end:
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        raise MqttError("malformed remaining length from the broker")
                if not complete or end - i < length:
                    break  # wait for the rest of the packet
                kind = first & 0xF0
                if kind == _PUBLISH:
                    qos = (first >> 1) & 0x03
                    if qos == 3:
                        raise MqttError("PUBLISH with QoS 3 from the broker")
                    stop = i + length
                    if length < 2:
                        raise MqttError("PUBLISH without a topic from the broker")
                    start = i + 2 + ((buf[i] << 8) | buf[i + 1])
                    if start + (2 if qos else 0) > stop:
                        raise MqttError("PUBLISH shorter than its topic from the broker")
                    try:
                        topic = buf[i + 2 : start].decode("utf-8")
                    except UnicodeDecodeError:
                        raise MqttError("PUBLISH topic is not UTF-8 (MQTT 3.1.1 1.5.3)") from None
                    if qos:
                        packet_id = (buf[start] << 8) | buf[start + 1]
                        start += 2
                    else:
                        packet_id = 0
                    publishes.append(
                        Publish(
                            topic, bytes(buf[start:stop]), qos, packet_id, bool(first & 0x08), bool(first & 1)
                        )
                    )
                    got = True
                else:
                    self._control(kind, bytes(buf[i : i + length]))
                pos = i + length
        except MqttError as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()
            return
        finally:
            if pos:
                del buf[:pos]
        if got:
            self.arrived.set()
            if len(publishes) >= self.max_pending and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()

    # packets other than PUBLISH --------------------------------------------------------------------

    def _control(self, kind: int, body: bytes) -> None:
        if kind == _CONNACK:
            if len(body) != 2:
                raise MqttError("malformed CONNACK")
            if not self.connack.done():
                self.connack.set_result((bool(body[0] & 1), body[1]))
        elif kind == _SUBACK:
            if len(body) < 3:
                raise MqttError("malformed SUBACK")
            fut = self.suback.pop(int.from_bytes(body[:2], "big"), None)
            if fut is not None and not fut.done():
                fut.set_result(body[2])
        elif kind == _PUBREL:
            # QoS 2, step 3: we stored the message before our PUBREC; complete the handshake.
            if self.transport is not None:
                self.transport.write(bytes((_PUBCOMP, 2)) + body[:2])
        elif kind == _PINGRESP:
            pass  # last_heard is updated for every chunk
        elif kind == _PUBACK:  # one of our own QoS 1 publishes is with the broker
            self.outstanding -= 1
            if self.outstanding <= 0:
                self.arrived.set()
        else:
            raise MqttError(f"unexpected MQTT packet type {kind >> 4} from the broker")

    def _fail(self, exc: MqttError) -> None:
        if self.error is None:
            self.error = exc
        if not self.connack.done():
            self.connack.set_exception(self.error)
            self.connack.exception()  # mark as retrieved: open() reports it
        for fut in self.suback.values():
            if not fut.done():
                fut.set_exception(self.error)
                fut.exception()
        self.suback.clear()
        self.arrived.set()

    def resume(self) -> None:
        if self.paused and len(self.publishes) < self.max_pending // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()


class MqttConnection:
    """One connected MQTT 3.1.1 session, for one subscriber task.

    >>> conn = await MqttConnection.open("broker", 1883, client_id="gw", clean_session=False)
    >>> await conn.subscribe("application/+/device/+/event/+", 1)
    >>> batch = await conn.receive(200)   # at least one message, at most 200
    >>> ...store the batch...
    >>> conn.ack(batch)                   # PUBACK/PUBREC, in arrival order
    >>> await conn.close()
    """

    def __init__(self, wire: _Wire, keepalive: int, session_present: bool) -> None:
        self._wire = wire
        self.keepalive = keepalive
        self.session_present = session_present
        self._next_id = 1
        self._pinger: asyncio.Task[None] | None = None
        if keepalive:
            self._pinger = asyncio.ensure_future(self._ping())

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        clean_session: bool = True,
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        max_pending: int = 20_000,
    ) -> MqttConnection:
        """Connect and wait for CONNACK; :class:`MqttError` names why the broker refused."""
        loop = asyncio.get_running_loop()
        try:
            _transport, wire = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Wire(max_pending), host, port, ssl=tls, server_hostname=host if tls else None
                ),
                timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise MqttError(
                f"cannot connect to the broker at {host}:{port}: {exc or type(exc).__name__}"
            ) from exc
        assert wire.transport is not None
        wire.transport.write(
            connect_packet(
                client_id,
                clean_session=clean_session,
                keepalive=keepalive,
                username=username,
                password=password,
            )
        )
        try:
            session_present, code = await asyncio.wait_for(asyncio.shield(wire.connack), timeout)
        except TimeoutError:
            wire.transport.close()
            raise MqttError(f"no CONNACK from {host}:{port} within {timeout:g} s") from None
        except MqttError as exc:
            wire.transport.close()
            raise MqttError(f"broker at {host}:{port} ended the connection before CONNACK: {exc}") from exc
        if code:
            wire.transport.close()
            reason = CONNACK_CODES.get(code, f"return code {code}")
            raise MqttError(f"broker at {host}:{port} refused the connection: {reason}")
        return cls(wire, keepalive, session_present)

    async def subscribe(self, topic_filter: str, qos: int, timeout: float = 10.0) -> int:
        """Subscribe and return the granted QoS; :class:`MqttError` if the broker refuses."""
        wire = self._check()
        packet_id = self._packet_id()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        wire.suback[packet_id] = fut
        assert wire.transport is not None
        wire.transport.write(subscribe_packet(packet_id, topic_filter, qos))
        try:
            granted = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise MqttError(f"no SUBACK for {topic_filter!r} within {timeout:g} s") from None
        if granted == 0x80:
            raise MqttError(f"the broker refused the subscription {topic_filter!r} (not authorised?)")
        return granted

    async def receive(self, max_n: int) -> list[Publish]:
        """Wait for at least one PUBLISH; return it and those already received, at most ``max_n``."""
        wire = self._wire
        while not wire.publishes:
            if wire.error is not None:
                raise wire.error
            wire.arrived.clear()
            await wire.arrived.wait()
        publishes = wire.publishes
        if len(publishes) <= max_n:
            batch = list(publishes)
            publishes.clear()
        else:
            batch = [publishes.popleft() for _ in range(max_n)]
        wire.resume()
        return batch

    def ack(self, batch: Iterable[Publish]) -> None:
        """PUBACK (QoS 1) / PUBREC (QoS 2) every message of ``batch`` in one write, in arrival order."""
        wire = self._check()
        out = bytearray()
        for p in batch:
            if p.qos == 1:
                out += b"\x40\x02" + p.packet_id.to_bytes(2, "big")
            elif p.qos == 2:
                out += b"\x50\x02" + p.packet_id.to_bytes(2, "big")
        if out:
            assert wire.transport is not None
            wire.transport.write(bytes(out))

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue one PUBLISH at QoS 0 or 1 (the benchmark's publisher and the tests; the ingest only
        receives, and the gateway's own publishes go through aiomqtt)."""
        if qos not in (0, 1):
            raise ValueError("MqttConnection.publish sends QoS 0 or 1 only")
        wire = self._check()
        assert wire.transport is not None
        wire.transport.write(publish_packet(topic, payload, qos, self._packet_id() if qos else 0))
        if qos:
            wire.outstanding += 1

    async def flush(self) -> None:
        """Wait until the broker has acknowledged every QoS 1 :meth:`publish`."""
        wire = self._wire
        while wire.outstanding > 0:
            if wire.error is not None:
                raise wire.error
            wire.arrived.clear()
            await wire.arrived.wait()

    async def close(self) -> None:
        """DISCONNECT and close (unacknowledged messages stay with the broker's session)."""
        if self._pinger is not None:
            self._pinger.cancel()
        transport = self._wire.transport
        if transport is not None and not transport.is_closing():
            if self._wire.error is None:
                transport.write(bytes((_DISCONNECT, 0)))
            transport.close()
        await asyncio.sleep(0)

    @property
    def error(self) -> MqttError | None:
        """Why the connection ended, once it has."""
        return self._wire.error

    def _check(self) -> _Wire:
        if self._wire.error is not None:
            raise self._wire.error
        return self._wire

    def _packet_id(self) -> int:
        packet_id = self._next_id
        self._next_id = packet_id % 0xFFFF + 1
        return packet_id

    async def _ping(self) -> None:
        wire = self._wire
        loop = asyncio.get_running_loop()
        interval = self.keepalive / 2
        while wire.error is None:
            await asyncio.sleep(interval)
            if wire.error is not None or wire.transport is None:
                return
            if loop.time() - wire.last_heard > 1.5 * self.keepalive:
                wire._fail(MqttError(f"the broker sent nothing for {1.5 * self.keepalive:g} s (keep-alive)"))
                wire.transport.close()
                return
            wire.transport.write(bytes((_PINGREQ, 0)))
