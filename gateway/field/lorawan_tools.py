"""LoRaWAN frame inspection for network engineers, on top of the node's own LoRaWAN code.

The crypto and frame layer exists once, in ``firmware/lib/citynode/lorawan`` (MicroPython code that
also runs on CPython); this module imports it through :func:`gateway.paths.firmware_module` and reuses it, so the CLI
checks frames with exactly the code the nodes run. :func:`decode_phy` turns a PHYPayload into a
plain dict; :func:`format_decoded` renders it as text. Keys go in, never out: nothing here returns,
logs or prints a key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from types import ModuleType
from typing import Any

from gateway.errors import CitynodeError, ConfigError, DecodeError
from gateway.paths import firmware_module

__all__ = ["decode_phy", "firmware_lorawan", "format_decoded", "parse_key", "parse_phy"]

_HEX = re.compile(r"^[0-9a-fA-F]*$")


def firmware_lorawan() -> dict[str, ModuleType]:
    """The firmware's ``citynode.lorawan`` modules (``frames``, ``crypto``, ``maccmd`` and the package),
    imported from the device package :mod:`gateway.paths` finds (checkout or wheel)."""
    return {
        name: firmware_module("citynode.lorawan" + ("" if name == "lorawan" else "." + name))
        for name in ("lorawan", "frames", "crypto", "maccmd")
    }


def parse_key(text: str | None, option: str) -> bytes | None:
    """A 16-byte AES key from 32 hex digits (spaces, ``:`` and ``-`` allowed, optional ``0x``).

    Raises ConfigError naming ``option``; the message never repeats the key.
    """
    if text is None:
        return None
    cleaned = re.sub(r"[\s:\-]", "", text)
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    if not _HEX.match(cleaned) or len(cleaned) != 32:
        raise ConfigError(
            f"{option}: need 32 hex digits (a 16-byte AES-128 key), got {len(cleaned)} characters"
        )
    return bytes.fromhex(cleaned)


def parse_phy(text: str) -> bytes:
    """A PHYPayload from hex (spaces allowed) or base64 (as ChirpStack's gateway events carry it)."""
    compact = "".join(text.split())
    if compact and _HEX.match(compact) and len(compact) % 2 == 0:
        return bytes.fromhex(compact)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise DecodeError(f"PHYPayload: {text[:40]!r} is neither hex nor base64")
    return raw


def _reading(fport: int, payload: bytes, uplink: bool) -> dict[str, Any]:
    """The citynode reading in ``payload`` when ``fport`` is a citynode port; {} otherwise."""
    direction = "uplink" if uplink else "downlink"
    try:
        from gateway.contract.schema import load_schema

        message = load_schema().by_fport(fport, direction)
    except CitynodeError as exc:
        return {"reading_error": f"payload contract unavailable: {exc}"}
    if message is None:
        return {}
    try:
        from gateway.contract import codec  # the codec is optional here: the decoder works without it
    except ImportError:
        missing = f"fPort {fport} is citynode {message.name}, but gateway.contract.codec is not installed"
        return {"reading_error": missing}
    try:
        value = codec.decode(fport, payload) if uplink else codec.decode_downlink(fport, payload)
    except CitynodeError as exc:
        return {"reading_error": str(exc)}
    return {"reading": value}


def decode_phy(
    phy: bytes,
    *,
    appkey: bytes | None = None,
    nwkskey: bytes | None = None,
    appskey: bytes | None = None,
    fcnt: int | None = None,
) -> dict[str, Any]:
    """Every field of a LoRaWAN 1.0.x PHYPayload as a dict (LoRaWAN 1.0.4 §4, §5, §6.2).

    ``appkey`` checks a join-request's MIC or decrypts and checks a join-accept; ``nwkskey`` checks a
    data frame's MIC (and decrypts FPort 0); ``appskey`` decrypts FPort 1..255. ``fcnt`` is the full
    32-bit counter when it exceeds 65535 (only its 16 low bits travel). ``mic_valid`` is True, False
    or None (no key). Raises DecodeError when the frame is malformed.
    """
    fw = firmware_lorawan()
    frames, crypto, maccmd, lw = fw["frames"], fw["crypto"], fw["maccmd"], fw["lorawan"]
    try:
        mtype = frames.mtype_of(phy)
    except lw.LoRaWANError as exc:
        raise DecodeError(str(exc)) from None
    out: dict[str, Any] = {
        "phy_len": len(phy),
        "mhdr": f"{phy[0]:02x}",
        "mtype": frames.MTYPE_NAMES[mtype],
        "major": phy[0] & 0x03,
    }
    try:
        if mtype == frames.JOIN_REQUEST:
            out.update(_join_request(frames, crypto, phy, appkey))
        elif mtype == frames.JOIN_ACCEPT:
            out.update(_join_accept(frames, crypto, lw, phy, appkey))
        elif frames.UNCONFIRMED_UP <= mtype <= frames.CONFIRMED_DOWN:
            out.update(_data(frames, crypto, maccmd, phy, nwkskey, appskey, fcnt))
        else:
            out["payload"] = phy[1:-4].hex() if len(phy) >= 5 else phy[1:].hex()
            out["mic"] = phy[-4:].hex() if len(phy) >= 5 else None
            out["mic_valid"] = None
            out["note"] = "RFU/proprietary frame: no standard fields to decode"
    except lw.LoRaWANError as exc:
        raise DecodeError(f"{out['mtype']}: {exc}") from None
    return out


def _join_request(frames: ModuleType, crypto: ModuleType, phy: bytes, appkey: bytes | None) -> dict[str, Any]:
    jr = frames.parse_join_request(phy)
    out: dict[str, Any] = {
        "join_eui": jr.join_eui.hex(),
        "dev_eui": jr.dev_eui.hex(),
        "dev_nonce": jr.dev_nonce,
        "mic": jr.mic.hex(),
        "mic_valid": None,
    }
    if appkey is not None:
        out["mic_valid"] = crypto.join_mic(appkey, phy, 19) == jr.mic
        if not out["mic_valid"]:
            out["mic_note"] = "wrong AppKey, or a corrupted frame"
    return out


def _join_accept(frames: ModuleType, crypto: ModuleType, lw: ModuleType, phy: bytes,
                 appkey: bytes | None) -> dict[str, Any]:
    if len(phy) not in (17, 33):
        raise lw.FrameError(f"join-accept: need 17 or 33 bytes, got {len(phy)}")
    if appkey is None:
        return {"encrypted": phy[1:].hex(), "mic_valid": None,
                "note": "a join-accept is encrypted with the AppKey: give --appkey to read it"}
    try:
        ja = frames.parse_join_accept(appkey, phy)
        valid = True
    except lw.MICError:
        clear = crypto.decrypt_join_accept(appkey, phy)
        return {
            "mic": clear[-4:].hex(),
            "mic_valid": False,
            "mic_note": "after decryption with the AppKey: wrong AppKey, or a join-accept for another device",
        }
    out: dict[str, Any] = {
        "join_nonce": ja.join_nonce,
        "net_id": f"{ja.net_id:06x}",
        "dev_addr": f"{ja.dev_addr:08x}",
        "rx1_dr_offset": ja.rx1_dr_offset,
        "rx2_data_rate": ja.rx2_dr,
        "rx_delay_s": ja.rx_delay_s,
    }
    if ja.cflist is not None:
        out["cflist_type"] = ja.cflist_type
        if ja.frequencies is not None:
            out["cflist_frequencies_hz"] = ja.frequencies
        elif ja.ch_masks is not None:
            out["cflist_ch_masks"] = [f"{m:04x}" for m in ja.ch_masks]
        else:
            out["cflist"] = bytes(ja.cflist).hex()
    out["mic"] = bytes(ja.mic).hex()
    out["mic_valid"] = valid
    return out


def _data(frames: ModuleType, crypto: ModuleType, maccmd: ModuleType, phy: bytes, nwkskey: bytes | None,
          appskey: bytes | None, fcnt: int | None) -> dict[str, Any]:
    f = frames.unpack_data(phy)
    uplink = f.uplink
    if fcnt is not None:
        if not 0 <= fcnt <= 0xFFFFFFFF or fcnt & 0xFFFF != f.fcnt:
            raise DecodeError(
                f"--fcnt {fcnt}: its 16 low bits ({fcnt & 0xFFFF}) are not the FCnt on air ({f.fcnt})"
            )
        fcnt32 = fcnt
    else:
        fcnt32 = f.fcnt
    out: dict[str, Any] = {
        "direction": "uplink" if uplink else "downlink",
        "confirmed": f.confirmed,
        "dev_addr": f"{f.dev_addr:08x}",
        "fctrl": f"{phy[5]:02x}",
        "adr": f.adr,
        "ack": f.ack,
    }
    if uplink:
        out["adr_ack_req"] = f.adr_ack_req
        out["class_b"] = f.class_b
    else:
        out["fpending"] = f.fpending
    out["fopts_len"] = len(f.fopts)
    out["fcnt_on_air"] = f.fcnt
    out["fcnt"] = fcnt32
    if f.fopts:
        out["fopts"] = f.fopts.hex()
        cmds, problem = maccmd.decode(f.fopts, uplink)
        out["mac_commands"] = [{"name": n, **fields} for n, fields in cmds]
        if problem:
            out["mac_problem"] = problem
    out["fport"] = f.fport
    if f.payload:
        out["frm_payload"] = f.payload.hex()
    key = nwkskey if f.fport == 0 else appskey
    if f.payload:
        if key is None:
            option = "--nwkskey" if f.fport == 0 else "--appskey"
            out["payload_note"] = f"encrypted: give {option} to decrypt"
        else:
            clear = bytes(crypto.crypt_payload(key, f.dev_addr, fcnt32, not uplink, f.payload))
            out["payload"] = clear.hex()
            if f.fport == 0:
                cmds, problem = maccmd.decode(clear, uplink)
                out["mac_commands"] = [{"name": n, **fields} for n, fields in cmds]
                if problem:
                    out["mac_problem"] = problem
            else:
                out.update(_reading(f.fport, clear, uplink))
    out["mic"] = f.mic.hex()
    if nwkskey is None:
        out["mic_valid"] = None
    else:
        mic = crypto.data_mic(nwkskey, phy, f.dev_addr, fcnt32, not uplink, len(phy) - 4)
        out["mic_valid"] = mic == f.mic
        if not out["mic_valid"]:
            hint = "" if fcnt is not None else "; a counter above 65535 needs --fcnt with the full value"
            out["mic_note"] = f"wrong NwkSKey, wrong DevAddr/FCnt, or a corrupted frame{hint}"
    return out


_ORDER_LABELS = {
    "phy_len": "PHYPayload length",
    "mhdr": "MHDR",
    "mtype": "MType",
    "major": "Major",
    "direction": "Direction",
    "confirmed": "Confirmed",
    "join_eui": "JoinEUI",
    "dev_eui": "DevEUI",
    "dev_nonce": "DevNonce",
    "join_nonce": "JoinNonce",
    "net_id": "NetID",
    "dev_addr": "DevAddr",
    "rx1_dr_offset": "DLSettings.RX1DRoffset",
    "rx2_data_rate": "DLSettings.RX2DataRate",
    "rx_delay_s": "RXDelay (s)",
    "cflist_type": "CFListType",
    "cflist_frequencies_hz": "CFList frequencies (Hz)",
    "cflist_ch_masks": "CFList channel masks",
    "cflist": "CFList",
    "encrypted": "Encrypted",
    "fctrl": "FCtrl",
    "adr": "FCtrl.ADR",
    "adr_ack_req": "FCtrl.ADRACKReq",
    "ack": "FCtrl.ACK",
    "fpending": "FCtrl.FPending",
    "class_b": "FCtrl.ClassB",
    "fopts_len": "FCtrl.FOptsLen",
    "fcnt_on_air": "FCnt (on air, 16 bit)",
    "fcnt": "FCnt (32 bit)",
    "fopts": "FOpts",
    "fport": "FPort",
    "frm_payload": "FRMPayload (encrypted)",
    "payload": "Payload (decrypted)",
    "payload_note": "Payload",
    "note": "Note",
}


def format_decoded(d: dict[str, Any]) -> str:
    """Human-readable text for :func:`decode_phy`'s dict: one ``label: value`` line per field."""
    lines = []
    for key, label in _ORDER_LABELS.items():
        if key in d:
            value = d[key]
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            elif value is None:
                value = "-"
            lines.append(f"{label}: {value}")
    for cmd in d.get("mac_commands", []):
        fields = ", ".join(f"{k}={v}" for k, v in cmd.items() if k != "name")
        lines.append(f"MAC command: {cmd['name']}" + (f" ({fields})" if fields else ""))
    if "mac_problem" in d:
        lines.append(f"MAC commands stopped: {d['mac_problem']}")
    if "reading" in d:
        lines.append("Reading: " + json.dumps(d["reading"], ensure_ascii=False))
    if "reading_error" in d:
        lines.append(f"Reading: not decoded: {d['reading_error']}")
    mic = d.get("mic")
    valid = d.get("mic_valid")
    state = {True: "valid", False: "INVALID", None: "not checked (no key given)"}[valid]
    note = f" ({d['mic_note']})" if "mic_note" in d else ""
    lines.append(f"MIC: {mic or '-'} {state}{note}")
    return "\n".join(lines)
