"""ChirpStack v4 integration events, built as the real ``chirpstack_api.integration`` protobuf messages.

The simulator builds exactly the messages ChirpStack's integrations publish, so a consumer cannot tell
them apart by shape: ``up`` (UplinkEvent), ``join`` (JoinEvent), ``ack`` (AckEvent), ``txack``
(TxAckEvent), ``status`` (StatusEvent) and ``log`` (LogEvent). :func:`to_json` gives ChirpStack's JSON
marshaling (protobuf JSON mapping, lowerCamelCase names, bytes as base64).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chirpstack_api import gw, integration
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.sim.nssim.registry import DeviceKeys

__all__ = [
    "Application",
    "Event",
    "device_info",
    "uplink_event",
    "join_event",
    "ack_event",
    "txack_event",
    "status_event",
    "log_event",
    "tx_info",
    "to_json",
]

_NS = uuid.UUID("3b0e6a4e-3c9d-4c9c-9d7e-6e6f64657369")  # fixed namespace: stable ids across runs


@dataclass(frozen=True)
class Application:
    """The tenant and application the simulated devices belong to (ids are UUID strings)."""

    tenant_id: str = str(uuid.uuid5(_NS, "tenant"))
    tenant_name: str = "citynode-sim"
    application_id: str = str(uuid.uuid5(_NS, "application"))
    application_name: str = "citynode"


@dataclass(frozen=True)
class Event:
    """One integration event: ``kind`` is ChirpStack's event type name (``up``, ``join``, ...)."""

    kind: str
    dev_eui: str
    message: Message = field(repr=False)

    def json(self) -> str:
        return to_json(self.message)


def to_json(message: Message) -> str:
    """ChirpStack's JSON marshaling of an integration event."""
    return json_format.MessageToJson(message, indent=None)


def _now(ts: datetime | None) -> datetime:
    return ts if ts is not None else datetime.now(UTC)


def device_info(app: Application, dev: DeviceKeys) -> integration.DeviceInfo:
    return integration.DeviceInfo(
        tenant_id=app.tenant_id,
        tenant_name=app.tenant_name,
        application_id=app.application_id,
        application_name=app.application_name,
        device_profile_id=str(uuid.uuid5(_NS, dev.device_profile_name)),
        device_profile_name=dev.device_profile_name,
        device_name=dev.name,
        dev_eui=dev.dev_eui,
        device_class_enabled=0,  # common.DeviceClass.CLASS_A
        tags=dict(dev.tags),
    )


def tx_info(freq_hz: int, sf: int, bw_hz: int) -> gw.UplinkTxInfo:
    return gw.UplinkTxInfo(
        frequency=freq_hz,
        modulation=gw.Modulation(
            lora=gw.LoraModulationInfo(bandwidth=bw_hz, spreading_factor=sf, code_rate=gw.CodeRate.CR_4_5)
        ),
    )


def rx_info(gateway_id: str, rssi: int, snr: float, context: bytes = b"") -> gw.UplinkRxInfo:
    info = gw.UplinkRxInfo(
        gateway_id=gateway_id,
        uplink_id=uuid.uuid4().int & 0xFFFFFFFF,
        rssi=int(rssi),
        snr=float(snr),
        channel=0,
        context=context,
        crc_status=gw.CRCStatus.CRC_OK,
    )
    info.ns_time.FromDatetime(datetime.now(UTC))
    return info


def uplink_event(
    app: Application,
    dev: DeviceKeys,
    *,
    dev_addr: int,
    adr: bool,
    dr: int,
    fcnt: int,
    fport: int | None,
    confirmed: bool,
    data: bytes,
    rx: gw.UplinkRxInfo,
    tx: gw.UplinkTxInfo,
    time: datetime | None = None,
) -> integration.UplinkEvent:
    ev = integration.UplinkEvent(
        deduplication_id=str(uuid.uuid4()),
        device_info=device_info(app, dev),
        dev_addr=f"{dev_addr:08x}",
        adr=adr,
        dr=dr,
        f_cnt=fcnt,
        f_port=fport or 0,
        confirmed=confirmed,
        data=data,
        rx_info=[rx],
        tx_info=tx,
        region_config_id="eu868",
    )
    ev.time.FromDatetime(_now(time))
    return ev


def join_event(app: Application, dev: DeviceKeys, dev_addr: int, time: datetime | None = None) -> integration.JoinEvent:
    ev = integration.JoinEvent(
        deduplication_id=str(uuid.uuid4()),
        device_info=device_info(app, dev),
        dev_addr=f"{dev_addr:08x}",
        region_config_id="eu868",
    )
    ev.time.FromDatetime(_now(time))
    return ev


def ack_event(
    app: Application, dev: DeviceKeys, queue_item_id: str, acknowledged: bool, fcnt_down: int
) -> integration.AckEvent:
    ev = integration.AckEvent(
        deduplication_id=str(uuid.uuid4()),
        device_info=device_info(app, dev),
        queue_item_id=queue_item_id,
        acknowledged=acknowledged,
        f_cnt_down=fcnt_down,
    )
    ev.time.FromDatetime(_now(None))
    return ev


def txack_event(
    app: Application, dev: DeviceKeys, queue_item_id: str, fcnt_down: int, gateway_id: str,
    freq_hz: int, sf: int, bw_hz: int, power_dbm: int = 14,
) -> integration.TxAckEvent:
    ev = integration.TxAckEvent(
        downlink_id=uuid.uuid4().int & 0xFFFFFFFF,
        device_info=device_info(app, dev),
        queue_item_id=queue_item_id,
        f_cnt_down=fcnt_down,
        gateway_id=gateway_id,
        tx_info=gw.DownlinkTxInfo(
            frequency=freq_hz,
            power=power_dbm,
            modulation=gw.Modulation(
                lora=gw.LoraModulationInfo(
                    bandwidth=bw_hz, spreading_factor=sf, code_rate=gw.CodeRate.CR_4_5, polarization_inversion=True
                )
            ),
        ),
    )
    ev.time.FromDatetime(_now(None))
    return ev


def status_event(app: Application, dev: DeviceKeys, margin_db: int, battery: int) -> integration.StatusEvent:
    """LoRaWAN 1.0.4 §5.5 DevStatusAns: battery 0 = external power, 1..254 = level, 255 = unknown.
    ChirpStack reports the level in percent (battery / 254 * 100)."""
    ev = integration.StatusEvent(
        deduplication_id=str(uuid.uuid4()),
        device_info=device_info(app, dev),
        margin=int(margin_db),
        external_power_source=battery == 0,
        battery_level_unavailable=battery == 255,
        battery_level=0.0 if battery in (0, 255) else round(battery / 254 * 100, 2),
    )
    ev.time.FromDatetime(_now(None))
    return ev


def log_event(
    app: Application, dev: DeviceKeys, code: str, description: str, context: Mapping[str, str] | None = None,
    level: str = "ERROR",
) -> integration.LogEvent:
    ev = integration.LogEvent(
        device_info=device_info(app, dev),
        level=integration.LogLevel.Value(level),
        code=integration.LogCode.Value(code),
        description=description,
        context=dict(context or {}),
    )
    ev.time.FromDatetime(_now(None))
    return ev
