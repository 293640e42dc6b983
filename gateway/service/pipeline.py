"""From one received ChirpStack event to stored readings, one function call per step.

    Pipeline.handle(kind, body, encoding, source)
      -> json_fast.uplink_from_json        JSON up event -> Uplink, when it surely can (the fast path)
      -> chirpstack.parse_event            else: bytes/JSON -> protobuf message (else dead letter)
      -> chirpstack.uplink_from_event      up: -> Uplink (best gateway's radio metadata)
      -> Pipeline.decode                   codec chosen per device (fPort -> decoded dict)
      -> normalize.normalize               decoded dict -> unit-labelled Readings
      -> Store.record_uplink               one transaction: dedupe by deduplicationId, FCnt health,
                                           readings (the sinks' outbox), dead letter if undecodable

``join``/``status``/``ack``/``txack``/``location`` events update the device row through
:meth:`Store.record_event`; a ``log`` event with code ``UPLINK_CODEC`` (ChirpStack's own codec failed)
becomes a dead letter. :meth:`Pipeline.handle` never raises for bad input: whatever cannot be used ends
in the dead-letter store with the reason. It raises :class:`gateway.service.store.StoreError` only when the
store itself fails, so that the ingest does not acknowledge an event it did not keep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import json_format

from gateway.contract.normalize import normalize
from gateway.contract.records import Reading, Uplink
from gateway.errors import DecodeError
from gateway.service.ingest import events as chirpstack
from gateway.service.ingest.events import ChirpStackEvent, Encoding
from gateway.service.ingest.json_fast import uplink_from_json
from gateway.service.metrics import Metrics
from gateway.service.store import DeviceUpdate, Store, UplinkRecord

__all__ = ["Decoder", "Outcome", "Pipeline", "PipelineOptions", "Prepared", "Result", "default_decoders"]

log = logging.getLogger("citynode.pipeline")

Decoder = Callable[[int, bytes], dict[str, Any]]
Outcome = Literal["stored", "duplicate", "dead_letter", "ignored"]

# ChirpStack's ``object`` (decoded by its own JavaScript codec) is only used when trusted.
OBJECT_CODEC = "chirpstack-object"


# The application-layer packages of FUOTA (TS005 multicast setup, TS004 fragmentation, TS003 clock
# synchronisation) on the fPorts `citynode provision` gives them in the device profiles'
# app_layer_params (gateway.field.provision.app_layer_params): the network server's, not readings.
APP_LAYER_FPORTS = frozenset((200, 201, 202))


def _not_readings(fport: int) -> bool:
    """FPort 0 (MAC commands) and the FUOTA packages' fPorts: stored and counted, never decoded."""
    return fport == 0 or fport in APP_LAYER_FPORTS


def _citynode_decode(fport: int, payload: bytes) -> dict[str, Any]:
    from gateway.contract import codec  # imported late: the codec loads the schema on first use

    return codec.decode(fport, payload)


def default_decoders() -> dict[str, Decoder]:
    """The codecs a device can be assigned by tag or profile. ``citynode`` is the default."""
    return {"citynode": _citynode_decode}


@dataclass(frozen=True)
class PipelineOptions:
    """How uplinks are decoded.

    ``trust_object``: use ChirpStack's ``object`` (its device-profile codec output) instead of decoding
    ``data`` ourselves; it must then have the citynode decoded form. ``codec_tag``: a device tag whose
    value names the codec for that device (e.g. ``codec = "chirpstack-object"``). ``profile_codecs``:
    device-profile name -> codec name.
    """

    default_codec: str = "citynode"
    trust_object: bool = False
    codec_tag: str = "codec"
    profile_codecs: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)  # a value (see gateway.contract.records on why it is not frozen)
class Result:
    """What happened to one event."""

    kind: str
    outcome: Outcome
    dev_eui: str | None = None
    readings: int = 0
    reason: str | None = None
    dedup_id: str | None = None


@dataclass(slots=True)  # a value (see gateway.contract.records on why it is not frozen)
class Prepared:
    """One event parsed, decoded and normalised, not yet stored (see :meth:`Pipeline.prepare`)."""

    kind: str
    source: str
    raw: bytes  # the body exactly as received, kept with the event
    received_at: datetime
    event: ChirpStackEvent | None = None
    uplink: Uplink | None = None
    readings: list[Reading] = field(default_factory=list)
    role: str | None = None  # the decoded message type
    reason: str | None = None  # why the uplink's payload was not decoded (a dead letter with the event)
    dead: tuple[str, bytes | str, str | None] | None = None  # (reason, body, devEUI): unusable event
    encoding: str = ""  # of the body: "json" or "protobuf"


class Pipeline:
    """Processes events into the store. Thread-safe (the store serialises writes)."""

    def __init__(
        self,
        store: Store,
        options: PipelineOptions | None = None,
        metrics: Metrics | None = None,
        decoders: Mapping[str, Decoder] | None = None,
    ) -> None:
        self.store = store
        self.options = options or PipelineOptions()
        self.metrics = metrics or Metrics()
        self.decoders: dict[str, Decoder] = dict(decoders or default_decoders())

    # -- entry point ---------------------------------------------------------------------------------

    def handle(
        self,
        kind: str,
        body: bytes | str,
        encoding: Encoding,
        source: str,
        *,
        dev_eui_hint: str | None = None,
        received_at: datetime | None = None,
    ) -> Result:
        """Process one event body of type ``kind`` received from ``source`` ("mqtt", "http", "amqp").

        ``dev_eui_hint`` (from the topic or routing key) labels a dead letter when the body cannot be
        parsed. Returns what happened; raises only :class:`StoreError`.
        """
        return self.commit(
            self.prepare(kind, body, encoding, source, dev_eui_hint=dev_eui_hint, received_at=received_at)
        )

    def handle_many(self, items: list[tuple[str, bytes | str, Encoding, str, str | None]]) -> list[Result]:
        """Process ``(kind, body, encoding, source, dev_eui_hint)`` items in one store transaction.

        Group commit for throughput: one fsync for the lot. Each event still succeeds or fails on its
        own (a SAVEPOINT each); a :class:`StoreError` (the commit failed) means none was kept.
        """
        prepared = [
            self.prepare(kind, body, enc, source, dev_eui_hint=hint)
            for kind, body, enc, source, hint in items
        ]
        return self.commit_many(prepared)

    # -- the two halves: prepare (CPU only, no store) and commit (the store) -------------------------
    #
    # An ingest may prepare the next batch while the store commits the previous one: SQLite releases
    # the GIL while it executes, so the two overlap on a multi-core machine. Nothing is acknowledged
    # before commit/commit_many returned; de-duplication happens in the store, in commit order.

    def prepare(
        self,
        kind: str,
        body: bytes | str,
        encoding: Encoding,
        source: str,
        *,
        dev_eui_hint: str | None = None,
        received_at: datetime | None = None,
    ) -> Prepared:
        """Parse, decode and normalise one event without touching the store. Never raises.

        A JSON ``up`` event takes :func:`gateway.service.ingest.json_fast.uplink_from_json` when it can (the same
        Uplink, without building the protobuf message); every other event, and any body that path is
        unsure of, goes through :func:`gateway.service.ingest.events.parse_event`.
        """
        now = received_at or datetime.now(UTC)
        self.metrics.inc("citynode_events_total", type=kind, ingest=source)
        raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
        if kind == "up" and encoding == "json":
            uplink = uplink_from_json(raw, now)
            codec = self.codec_for(uplink) if uplink is not None else OBJECT_CODEC
            if uplink is not None and codec != OBJECT_CODEC:
                return self._prepare_uplink(source, raw, now, None, uplink, encoding, codec)
        try:
            event = chirpstack.parse_event(kind, body, encoding)
        except DecodeError as exc:
            return Prepared(kind, source, raw, now, dead=(str(exc), body, dev_eui_hint), encoding=encoding)
        if kind != "up":
            return Prepared(kind, source, raw, now, event=event, encoding=encoding)
        try:
            uplink = chirpstack.uplink_from_event(event, received_at=now)
        except DecodeError as exc:
            return Prepared(
                kind, source, raw, now, event=event, dead=(str(exc), raw, event.dev_eui), encoding=encoding
            )
        return self._prepare_uplink(source, raw, now, event, uplink, encoding)

    def _prepare_uplink(
        self,
        source: str,
        raw: bytes,
        now: datetime,
        event: ChirpStackEvent | None,
        uplink: Uplink,
        encoding: str,
        codec: str | None = None,
    ) -> Prepared:
        """Decode and normalise an uplink's payload (``event`` is needed only for ChirpStack's ``object``;
        ``codec``: the device's codec when the caller already looked it up)."""
        if _not_readings(uplink.f_port):
            # FPort 0 carries MAC commands only (LoRaWAN 1.0.4 4.3.2), 200..202 the FUOTA packages'
            # answers: nothing to decode, still counted.
            return Prepared("up", source, raw, now, event=event, uplink=uplink, encoding=encoding)
        readings: list[Reading] = []
        role = None
        reason = None
        try:
            decoded = self.decode(event, uplink, codec)
            readings = normalize(decoded, uplink)
            role = decoded.get("type")
        except DecodeError as exc:
            reason = f"fPort {uplink.f_port} FCnt {uplink.f_cnt}: {exc} (payload {uplink.data.hex()})"
        except Exception as exc:  # a codec bug must not stop the service nor lose the uplink
            log.exception(
                "codec failed unexpectedly", extra={"dev_eui": uplink.dev_eui, "f_port": uplink.f_port}
            )
            reason = (
                f"fPort {uplink.f_port} FCnt {uplink.f_cnt}: internal codec error "
                f"{type(exc).__name__}: {exc} (payload {uplink.data.hex()})"
            )
        return Prepared(
            "up",
            source,
            raw,
            now,
            event=event,
            uplink=uplink,
            readings=readings,
            role=role,
            reason=reason,
            encoding=encoding,
        )

    def commit(self, prepared: Prepared) -> Result:
        """Store one prepared event (its own transaction, or a SAVEPOINT inside :meth:`Store.batch`).

        Raises only :class:`StoreError`.
        """
        p = prepared
        if p.dead is not None:
            reason, body, dev_eui = p.dead
            return self._dead(p.source, p.kind, reason, body, dev_eui)
        if p.kind != "up":
            assert p.event is not None
            return self._other(p.event, p.raw, p.source, p.received_at)
        assert p.uplink is not None
        return self._store_uplink(p)

    def commit_many(self, prepared: list[Prepared]) -> list[Result]:
        """Store prepared events in one transaction (group commit: one fsync for the lot).

        Consecutive uplinks go to :meth:`Store.record_uplinks` together (a few multi-row statements,
        with the outcome of storing them one at a time); other events are stored one by one. A
        :class:`StoreError` (the commit failed) means none was kept, and none may be acknowledged.
        """
        results: list[Result | None] = [None] * len(prepared)
        with self.store.batch():
            run: list[int] = []  # consecutive decodable-or-not uplinks: stored with one bulk call
            for index, p in enumerate(prepared):
                if p.dead is None and p.kind == "up" and p.uplink is not None and not _not_readings(p.uplink.f_port):
                    run.append(index)
                    continue
                self._commit_uplinks(prepared, run, results)
                run = []
                results[index] = self.commit(p)
            self._commit_uplinks(prepared, run, results)
        return [r for r in results if r is not None]

    def _commit_uplinks(
        self, prepared: list[Prepared], indexes: list[int], results: list[Result | None]
    ) -> None:
        if not indexes:
            return
        records = [
            UplinkRecord(
                prepared[i].uplink,  # type: ignore[arg-type]
                prepared[i].readings,
                raw=prepared[i].raw,
                encoding=prepared[i].encoding,
                role=prepared[i].role,
                dead_letter_reason=prepared[i].reason,
                dead_letter_source="decode",
            )
            for i in indexes
        ]
        decoded = readings = 0
        for i, stored in zip(indexes, self.store.record_uplinks(records), strict=True):
            result = results[i] = self._uplink_result(prepared[i], stored, count=False)
            if result.outcome == "stored":
                decoded += 1
                readings += result.readings
        self.metrics.inc("citynode_uplinks_decoded_total", decoded)  # once per batch, not per uplink
        self.metrics.inc("citynode_readings_total", readings)

    # -- uplinks -------------------------------------------------------------------------------------

    def _store_uplink(self, p: Prepared) -> Result:
        uplink = p.uplink
        assert uplink is not None
        if _not_readings(uplink.f_port):
            stored = self.store.record_uplink(uplink, [], raw=p.raw, encoding=p.encoding)
            return self._stored_result(uplink, stored, 0, "ignored")
        stored = self.store.record_uplink(
            uplink,
            p.readings,
            raw=p.raw,
            encoding=p.encoding,
            role=p.role,
            dead_letter_reason=p.reason,
            dead_letter_source="decode",
        )
        return self._uplink_result(p, stored)

    def _uplink_result(self, p: Prepared, stored: bool, count: bool = True) -> Result:
        """Metrics, log line and result of an uplink with a payload, once the store has answered.

        ``count=False``: the caller counts decoded uplinks and readings itself (a batch at once).
        """
        uplink = p.uplink
        assert uplink is not None
        reason = p.reason
        if not stored:
            return self._stored_result(uplink, False, 0, "duplicate")
        if reason is not None:
            self.metrics.inc("citynode_dead_letters_total", source="decode")
            log.warning(
                "uplink not decoded",
                extra={
                    "dev_eui": uplink.dev_eui,
                    "f_cnt": uplink.f_cnt,
                    "reason": reason,
                    "ingest": p.source,
                },
            )
            return Result("up", "dead_letter", uplink.dev_eui, 0, reason, uplink.deduplication_id)
        if count:
            self.metrics.inc("citynode_uplinks_decoded_total")
            self.metrics.inc("citynode_readings_total", len(p.readings))
        return self._stored_result(uplink, True, len(p.readings), "stored")

    def _stored_result(self, uplink: Uplink, stored: bool, count: int, outcome: Outcome) -> Result:
        if not stored:
            self.metrics.inc("citynode_duplicates_total", type="up")
            return Result("up", "duplicate", uplink.dev_eui, 0, None, uplink.deduplication_id)
        return Result("up", outcome, uplink.dev_eui, count, None, uplink.deduplication_id)

    def codec_for(self, uplink: Uplink) -> str:
        """The codec name for this device: tag, then device profile, then the default/trust setting."""
        opts = self.options
        name = uplink.tags.get(opts.codec_tag) if opts.codec_tag else None
        if not name:
            name = opts.profile_codecs.get(uplink.device_profile_name)
        if not name:
            name = OBJECT_CODEC if opts.trust_object else opts.default_codec
        return name

    def decode(
        self, event: ChirpStackEvent | None, uplink: Uplink, codec: str | None = None
    ) -> dict[str, Any]:
        """Decode the uplink's payload with its device's codec; raises :class:`DecodeError`.

        ``event`` (the parsed ChirpStack event) is needed only by the ``chirpstack-object`` codec;
        ``codec`` is :meth:`codec_for`'s answer when the caller has it already.
        """
        name = codec or self.codec_for(uplink)
        if name == OBJECT_CODEC:
            if event is None or not event.message.HasField("object"):
                raise DecodeError("codec chirpstack-object: ChirpStack sent no decoded object")
            obj = json_format.MessageToDict(event.message.object)
            # ChirpStack's JS codec returns {data: ...}; ``object`` is that ``data``, in the decoded form.
            return obj
        decoder = self.decoders.get(name)
        if decoder is None:
            raise DecodeError(f"no codec named {name!r} (known: {', '.join([*self.decoders, OBJECT_CODEC])})")
        result = decoder(uplink.f_port, uplink.data)
        if not isinstance(result, dict):
            raise DecodeError(f"codec {name} returned {type(result).__name__}, not a dict")
        return result

    # -- other events --------------------------------------------------------------------------------

    def _other(self, event: ChirpStackEvent, raw: bytes, source: str, now: datetime) -> Result:
        msg = event.message
        info = msg.device_info
        dev_eui = event.dev_eui
        if dev_eui is None or not chirpstack.DEV_EUI.match(dev_eui):
            # ChirpStack sets deviceInfo on every device event; without it the body is not one.
            return self._dead(
                source,
                event.kind,
                f"{event.kind} event: deviceInfo.devEui missing or invalid ({info.dev_eui!r})",
                raw,
                None,
            )
        update = DeviceUpdate(
            dev_eui=dev_eui or "",
            name=info.device_name,
            application_id=info.application_id,
            tags=dict(info.tags),
            joined=event.kind == "join",
            margin=int(msg.margin) if event.kind == "status" else None,
            battery_level=(
                float(msg.battery_level)
                if event.kind == "status"
                and not msg.battery_level_unavailable
                and not msg.external_power_source
                else None
            ),
        )
        dead: tuple[str, str] | None = None
        if event.kind == "log":
            code = chirpstack.integration.LogCode.Name(msg.code) if msg.code in _LOG_CODES else str(msg.code)
            level = (
                chirpstack.integration.LogLevel.Name(msg.level)
                if msg.level in _LOG_LEVELS
                else str(msg.level)
            )
            if code == "UPLINK_CODEC":
                context = ", ".join(f"{k}={v}" for k, v in sorted(msg.context.items()))
                reason = f"ChirpStack {level} {code}: {msg.description}" + (
                    f" ({context})" if context else ""
                )
                dead = ("chirpstack-log", reason)
            else:
                log.info("chirpstack log", extra={"dev_eui": dev_eui, "code": code, "level": level})
        stored = self.store.record_event(
            event.kind,
            update,
            received_at=event.time(now),
            dedup_id=event.dedup_id,
            raw=raw,
            encoding=event.encoding,
            dead_letter=dead,
        )
        if not stored:
            self.metrics.inc("citynode_duplicates_total", type=event.kind)
            return Result(event.kind, "duplicate", dev_eui, dedup_id=event.dedup_id)
        if dead is not None:
            self.metrics.inc("citynode_dead_letters_total", source=dead[0])
            return Result(event.kind, "dead_letter", dev_eui, reason=dead[1], dedup_id=event.dedup_id)
        return Result(event.kind, "stored", dev_eui, dedup_id=event.dedup_id)

    def _dead(self, source: str, kind: str, reason: str, body: bytes | str, dev_eui: str | None) -> Result:
        full = f"{source}: {reason}"
        self.store.dead_letter(source, full, body, dev_eui)
        self.metrics.inc("citynode_dead_letters_total", source=source)
        log.warning(
            "event not parsed", extra={"ingest": source, "type": kind, "dev_eui": dev_eui, "reason": reason}
        )
        return Result(kind, "dead_letter", dev_eui, reason=full)


_LOG_CODES = frozenset(chirpstack.integration.LogCode.values())
_LOG_LEVELS = frozenset(chirpstack.integration.LogLevel.values())
