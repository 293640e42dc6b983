"""FUOTA deployments through ChirpStack's ``FuotaService``: choose the devices, create and start one
deployment per device profile, and read back each device's progress and result.

A ChirpStack deployment has one device profile (its devices must share it, ``storage/fuota.rs``), and
a citynode fleet has one profile per role, so :func:`deploy` makes one deployment per profile among
the chosen devices. Each carries the whole update package as its payload, sets up a Class C multicast
session (TS005) on the given frequency and data rate, fragments with the given redundancy (TS004),
lets ChirpStack compute the fragment size and the session timeout, asks every device for its
fragmentation status after the session, and tags the devices that completed with
``app_version=<target>`` (``on_complete_set_device_tags``). :func:`status` reads one deployment back
as rows for ``citynode fuota status``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from chirpstack_api import api

from gateway.errors import ConfigError
from gateway.field.chirpstack_client import ChirpStackClient
from gateway.field.fuota import FORMAT, MAGIC

__all__ = [
    "DEFAULT_MULTICAST_FREQ_HZ",
    "DeviceProgress",
    "DeploymentStatus",
    "deploy",
    "package_versions",
    "select_devices",
    "status",
]

# RP002 2.4.3: EU868 RX2 / Class C default frequency, the usual multicast channel
DEFAULT_MULTICAST_FREQ_HZ = 869525000
_STEPS = (
    ("mc_group_setup_completed_at", "multicast group"),
    ("frag_session_setup_completed_at", "fragmentation session"),
    ("mc_session_completed_at", "Class C session"),
    ("frag_status_completed_at", "fragmentation status"),
)


def package_versions(data: bytes, where: str) -> tuple[str, str]:
    """(base, target) from an update package's manifest (the signature is the node's to check)."""
    if len(data) < 7 or data[:4] != MAGIC or data[4] != FORMAT:
        raise ConfigError(f"{where}: not a citynode update package (build one with `citynode fuota build`)")
    n = int.from_bytes(data[5:7], "little")
    try:
        manifest = json.loads(data[7:7 + n])
        return str(manifest["base"]), str(manifest["target"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{where}: the package's manifest is unreadable") from None


def _matcher(spec: str) -> tuple[str, str]:
    """A FILTER: ``all``, ``tag:KEY=VALUE``, ``name:GLOB``, ``profile:NAME`` or DevEUIs ``a,b,...``."""
    if spec == "all":
        return "all", ""
    for kind in ("tag", "name", "profile"):
        if spec.startswith(kind + ":"):
            value = spec[len(kind) + 1:]
            if not value or (kind == "tag" and "=" not in value):
                raise ConfigError(f"--devices: {spec!r}: expected {kind}:KEY=VALUE" if kind == "tag"
                                  else f"--devices: {spec!r}: {kind}: needs a value")
            return kind, value
    euis = [e.strip().lower() for e in spec.split(",") if e.strip()]
    for e in euis:
        if len(e) != 16 or any(c not in "0123456789abcdef" for c in e):
            raise ConfigError(f"--devices: {e!r} is neither a DevEUI (16 hex digits) nor a filter "
                              "(all, tag:KEY=VALUE, name:GLOB, profile:NAME) nor a file")
    return "euis", ",".join(euis)


def _read_list(path: Path) -> list[str]:
    euis = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip().lower()
        if not text:
            continue
        if len(text) != 16 or any(c not in "0123456789abcdef" for c in text):
            raise ConfigError(f"{path}:{i}: {text!r} is not a DevEUI (16 hex digits)")
        euis.append(text)
    if not euis:
        raise ConfigError(f"{path}: lists no DevEUI")
    return euis


def select_devices(devices: Iterable[api.DeviceListItem], spec: str) -> list[api.DeviceListItem]:
    """The application's devices that ``spec`` names: a file of DevEUIs (one a line, ``#`` comments)
    or a FILTER (see :func:`_matcher`). ConfigError when it names an unknown DevEUI or no device."""
    devices = list(devices)
    path = Path(spec)
    if path.is_file():
        kind, value = "euis", ",".join(_read_list(path))
    else:
        kind, value = _matcher(spec)
    if kind == "euis":
        by_eui = {d.dev_eui.lower(): d for d in devices}
        unknown = [e for e in value.split(",") if e not in by_eui]
        if unknown:
            raise ConfigError(f"--devices: not in the application: {', '.join(unknown)}")
        chosen = [by_eui[e] for e in dict.fromkeys(value.split(","))]
    elif kind == "all":
        chosen = devices
    elif kind == "tag":
        key, want = value.split("=", 1)
        chosen = [d for d in devices if d.tags.get(key) == want]
    elif kind == "name":
        chosen = [d for d in devices if fnmatch.fnmatchcase(d.name, value)]
    else:
        chosen = [d for d in devices if d.device_profile_name == value]
    if not chosen:
        raise ConfigError(f"--devices: {spec!r} matches no device of the application")
    return chosen


def deploy(cs: ChirpStackClient, package: bytes, application_id: str, devices: list[api.DeviceListItem], *,
           redundancy_pct: int = 20, dr: int = 5, frequency_hz: int = DEFAULT_MULTICAST_FREQ_HZ,
           retries: int = 3, fragment_size: int | None = None, name: str | None = None,
           target: str = "") -> list[tuple[str, str, int]]:
    """Create, fill and start one deployment per device profile; returns (deployment id, profile
    name, devices). Refuses (ConfigError) a profile without TS004/TS005, as ChirpStack's flow would
    fail its first job."""
    by_profile: dict[str, list[api.DeviceListItem]] = {}
    for d in devices:
        by_profile.setdefault(d.device_profile_id, []).append(d)
    profiles = {pid: cs.get_device_profile(pid) for pid in by_profile}
    for p in profiles.values():
        alp = p.app_layer_params
        missing = [n for n, v in (("TS004", alp.ts004_version), ("TS005", alp.ts005_version)) if not v]
        if missing:
            raise ConfigError(f"device profile {p.name!r} does not enable {' and '.join(missing)} "
                              "(app_layer_params): ChirpStack cannot run a FUOTA deployment for it")
    out = []
    for pid, members in sorted(by_profile.items(), key=lambda kv: profiles[kv[0]].name):
        dep = api.FuotaDeployment(
            application_id=application_id, device_profile_id=pid,
            name=name or f"citynode {target or 'update'} {profiles[pid].name}",
            multicast_group_type=api.CLASS_C, multicast_class_c_scheduling_type=api.DELAY,
            multicast_dr=dr, multicast_frequency=frequency_hz, calculate_multicast_timeout=True,
            unicast_max_retry_count=retries, fragmentation_redundancy_percentage=redundancy_pct,
            request_fragmentation_session_status=api.AFTER_SESSION_TIMEOUT, payload=package,
        )
        if fragment_size is None:
            dep.calculate_fragmentation_fragment_size = True
        else:
            dep.fragmentation_fragment_size = fragment_size
        if target:
            dep.on_complete_set_device_tags["app_version"] = target
        dep_id = cs.create_fuota_deployment(dep)
        cs.add_fuota_devices(dep_id, [d.dev_eui for d in members])
        cs.start_fuota_deployment(dep_id)
        out.append((dep_id, profiles[pid].name, len(members)))
    return out


@dataclass(frozen=True)
class DeviceProgress:
    dev_eui: str
    steps_done: tuple[str, ...]  # the steps completed, in the flow's order
    result: str  # "complete", "failed: <ChirpStack's error>" or "in progress: <next step>"


@dataclass(frozen=True)
class DeploymentStatus:
    id: str
    name: str
    started: bool
    completed: bool
    job: str  # the latest job (ChirpStack's FuotaJob name), "" before the start
    job_note: str  # its warning or error message
    devices: tuple[DeviceProgress, ...]

    def counts(self) -> dict[str, int]:
        out = {"complete": 0, "failed": 0, "in progress": 0}
        for d in self.devices:
            out[d.result.split(":", 1)[0]] += 1
        return out


def status(cs: ChirpStackClient, deployment_id: str) -> DeploymentStatus:
    """One deployment's state and each device's progress, as ChirpStack records them."""
    got = cs.get_fuota_deployment(deployment_id)
    jobs = cs.list_fuota_jobs(deployment_id)
    rows = []
    for r in cs.list_fuota_devices(deployment_id):
        done = tuple(label for fld, label in _STEPS if r.HasField(fld))
        if r.error_msg:
            result = f"failed: {r.error_msg}"
        elif r.HasField("completed_at"):
            result = "complete"
        elif got.HasField("completed_at"):
            result = "failed: did not complete the deployment"
        else:
            nxt = next((label for fld, label in _STEPS if not r.HasField(fld)), "completion")
            result = f"in progress: {nxt}"
        rows.append(DeviceProgress(r.dev_eui, done, result))
    last = jobs[-1] if jobs else None
    return DeploymentStatus(
        id=deployment_id, name=got.deployment.name, started=got.HasField("started_at"),
        completed=got.HasField("completed_at"), job=last.job if last else "",
        job_note=(last.error_msg or last.warning_msg) if last else "", devices=tuple(rows))
