"""Provisioning: make a ChirpStack v4 tenant match a node inventory, and write one config bundle per node.

The inventory is the source of truth. :func:`make_plan` reads what ChirpStack has (application, one device
profile per role, devices, OTAA keys) and what the bundle directory holds, and compares it with what the
inventory asks for; every object gets a :class:`Step` whose action is ``create``, ``update`` or
``unchanged`` (or ``conflict`` for a DevEUI registered in another application). :func:`apply_plan`
carries the steps out in dependency order and returns a :class:`Report`.

Because the plan is computed from the actual state every time, provisioning is idempotent: a second run
finds everything ``unchanged`` and does nothing; a run that failed halfway is completed by running it
again. Objects that are not in the inventory are never deleted.

What gets created (LoRaWAN 1.0.4, RP002-1.0.3 regional parameters, EU868, OTAA, class A):

* the application (default name ``citynode``), tagged ``managed_by=citynode``;
* one device profile per role, ``citynode-<role>``, with the JavaScript codec from
  ``codecs/chirpstack/citynode.js``, the role's expected uplink interval, one device-status request
  a day and the FUOTA application-layer packages (``app_layer_params``: TS003 clock sync, TS004
  fragmentation, TS005 remote multicast setup, all v2, on fPorts 202/201/200) that ``citynode fuota
  deploy`` requires. Not ``supports_class_c``: ChirpStack would then treat a 1.0.x node as Class C from
  its join on; the multicast session (TS005 McClassCSessionReq) is what puts a node in Class C;
* one device per node, named as in the inventory, tagged ``role``, ``board``, ``lat``, ``lon``,
  ``managed_by`` plus the inventory's own tags;
* OTAA keys: for LoRaWAN 1.0.x ChirpStack keeps the AppKey in ``nwk_key`` (``app_key`` is the 1.1 AppKey
  and is sent as zeros). Keys come from, in order: the inventory, ChirpStack (a device that has keys
  keeps them), the node's existing bundle (a key already flashed is never replaced silently), and only
  then :func:`secrets.token_hex`;
* the GenAppKey in the device keys' ``gen_app_key``: for a 1.0.x device ChirpStack derives the FUOTA
  multicast keys (McRootKey) and the TS004 v2 data-block MIC key from it, so the node must hold the same
  one. It comes from the same places in the same order as the AppKey;
* a bundle ``<bundles>/<deveui>.json`` (directory 0700, file 0600) with everything the node needs to join,
  its ``gen_app_key`` and, given ``fuota_pub`` (the hex Ed25519 public key of ``citynode fuota keygen``),
  the key the node checks update packages with. Without a new one, a bundle keeps the ``fuota_pub`` it has.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chirpstack_api import api, common
from google.protobuf.message import Message

from gateway.errors import CitynodeError, ConfigError
from gateway.field.chirpstack_client import (
    ChirpStackAuthError,
    ChirpStackClient,
    ChirpStackError,
    ChirpStackUnavailable,
)
from gateway.field.inventory import ROLES, Node
from gateway.paths import firmware_module

__all__ = [
    "BUNDLE_FORMAT",
    "MANAGED_TAG",
    "ROLE_SETTINGS",
    "Outcome",
    "Plan",
    "ProvisionError",
    "Report",
    "RoleSettings",
    "Step",
    "apply_plan",
    "app_layer_params",
    "bundle_for",
    "check_bundles_dir",
    "desired_application",
    "desired_device",
    "desired_profile",
    "load_codec_script",
    "make_plan",
    "profile_name",
    "write_bundle",
]

BUNDLE_FORMAT = "citynode-node-bundle/1"
MANAGED_TAG = ("managed_by", "citynode")
REGION = "EU868"
MAC_VERSION = "1.0.4"
_ZERO_KEY = "0" * 32  # the LoRaWAN 1.1 AppKey slot, unused by 1.0.x devices
# ChirpStack's own default fPorts of the application-layer packages (storage AppLayerParams::default),
# also the ones the specifications reserve: TS003 202, TS004 201, TS005 200.
TS003_F_PORT, TS004_F_PORT, TS005_F_PORT = 202, 201, 200


class ProvisionError(CitynodeError):
    """Some provisioning steps failed; the report printed before it says which, and a rerun completes them."""


@dataclass(frozen=True)
class RoleSettings:
    """What a role's device profile and bundle say about timing; the firmware's defaults per role."""

    role: str
    fport: int  # codecs/schema.json: the role's uplink FPort
    uplink_interval_s: int  # expected seconds between uplinks (ChirpStack: uplink_interval)
    status_interval_h: int  # hours between device_status uplinks (config downlink: status_interval)
    status_requests_per_day: int  # ChirpStack's device_status_req_interval: DevStatusReq per day
    description: str


# Intervals: ONE source, the firmware's own per-role defaults (citynode.config.ROLE_INTERVALS: air
# quality 600 s, bin fill 3600 s, passenger count 300 s, crowd count 900 s) and status_interval, so that
# a bundle, a device profile and a node flashed without a bundle interval all say the same.
_FIRMWARE_CONFIG = firmware_module("citynode.config")
_INTERVALS: Mapping[str, int] = _FIRMWARE_CONFIG.ROLE_INTERVALS
_STATUS_H: int = _FIRMWARE_CONFIG.DEFAULTS["status_interval"]
ROLE_SETTINGS: Mapping[str, RoleSettings] = {
    "air_quality": RoleSettings("air_quality", 10, _INTERVALS["air_quality"], _STATUS_H, 1,
                                "Air quality: BME680 + particulate sensor"),
    "bin_fill": RoleSettings("bin_fill", 11, _INTERVALS["bin_fill"], _STATUS_H, 1,
                             "Waste-bin fill level: ultrasonic distance"),
    "passenger_count": RoleSettings("passenger_count", 12, _INTERVALS["passenger_count"], _STATUS_H, 1,
                                    "Passenger counting: IR beams + GPS"),
    "crowd_count": RoleSettings("crowd_count", 13, _INTERVALS["crowd_count"], _STATUS_H, 1,
                                "Crowd counting: WiFi probes + BLE adverts"),
}
assert tuple(ROLE_SETTINGS) == ROLES

# The device-profile fields provisioning manages; any other field set in ChirpStack's UI is kept.
_PROFILE_FIELDS = (
    "name", "description", "region", "mac_version", "reg_params_revision", "adr_algorithm_id",
    "payload_codec_runtime", "payload_codec_script", "flush_queue_on_activate", "uplink_interval",
    "device_status_req_interval", "supports_otaa", "supports_class_b", "supports_class_c",
    "auto_detect_measurements", "tags", "app_layer_params",
)
_DEVICE_FIELDS = ("name", "description", "device_profile_id", "join_eui", "tags")
_APPLICATION_FIELDS = ("name", "description", "tags")

_KIND_ORDER = ("application", "device-profile", "device", "keys", "bundle")


def profile_name(role: str) -> str:
    return f"citynode-{role}"


def load_codec_script(codecs_dir: Path | None = None) -> str:
    """The generated ChirpStack codec ``codecs/chirpstack/citynode.js`` (ConfigError when missing)."""
    if codecs_dir is None:
        from gateway.paths import codecs_dir as _codecs_dir

        codecs_dir = _codecs_dir()
    path = codecs_dir / "chirpstack" / "citynode.js"
    try:
        script = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"codec script {path}: not found; generate it with `make generate` (citynode codec generate) "
            "before provisioning, the device profiles carry it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"codec script {path}: cannot read it ({exc.strerror})") from None
    if "decodeUplink" not in script:
        raise ConfigError(f"codec script {path}: has no decodeUplink function; regenerate it with `make generate`")
    return script


# -- desired state -----------------------------------------------------------------------------------


def desired_application(tenant_id: str, name: str) -> api.Application:
    return api.Application(
        tenant_id=tenant_id,
        name=name,
        description="citynode sensor nodes (managed by `citynode provision`; edit the inventory, not here)",
        tags=dict([MANAGED_TAG]),
    )


def app_layer_params() -> api.AppLayerParams:
    """The FUOTA packages a citynode runs, as ChirpStack's device profile names them: v2 of TS003,
    TS004 and TS005 (docs/design/fuota.md) on their standard fPorts."""
    return api.AppLayerParams(
        ts003_version=api.TS003_v200, ts003_f_port=TS003_F_PORT,  # (the proto spells this one "v200")
        ts004_version=api.TS004_V200, ts004_f_port=TS004_F_PORT,
        ts005_version=api.TS005_V200, ts005_f_port=TS005_F_PORT,
    )


def desired_profile(tenant_id: str, role: str, codec_script: str) -> api.DeviceProfile:
    s = ROLE_SETTINGS[role]
    return api.DeviceProfile(
        tenant_id=tenant_id,
        name=profile_name(role),
        description=f"{s.description}. citynode firmware, uplinks on FPort {s.fport}, config downlinks on FPort 2.",
        region=common.EU868,
        mac_version=common.LORAWAN_1_0_4,
        reg_params_revision=common.RP002_1_0_3,
        adr_algorithm_id="default",  # ChirpStack's built-in ADR algorithm
        payload_codec_runtime=api.CodecRuntime.JS,
        payload_codec_script=codec_script,
        flush_queue_on_activate=True,  # a re-joined node starts from a clean downlink queue
        uplink_interval=s.uplink_interval_s,
        device_status_req_interval=s.status_requests_per_day,
        supports_otaa=True,
        supports_class_b=False,
        # Class C only inside a FUOTA multicast session, never from the join on (see the module text).
        supports_class_c=False,
        auto_detect_measurements=True,
        app_layer_params=app_layer_params(),
        # ChirpStack merges profile tags into every event's deviceInfo.tags: the gateway's status page
        # reads the configured interval from there (gateway.service.api.overview).
        tags={"role": role, "uplink_interval_s": str(s.uplink_interval_s), MANAGED_TAG[0]: MANAGED_TAG[1]},
    )


def device_tags(node: Node) -> dict[str, str]:
    tags = dict(node.tags)
    tags.update(role=node.role, board=node.board)
    if node.lat is not None and node.lon is not None:
        tags.update(lat=f"{node.lat:.6f}", lon=f"{node.lon:.6f}")  # 6 decimals: 0.1 m, more than enough
    tags[MANAGED_TAG[0]] = MANAGED_TAG[1]
    return tags


def desired_device(node: Node, application_id: str, profile_id: str) -> api.Device:
    return api.Device(
        dev_eui=node.dev_eui,
        name=node.name,
        description=f"citynode {node.role} node on {node.board}",
        application_id=application_id,
        device_profile_id=profile_id,
        join_eui=node.join_eui,
        tags=device_tags(node),
    )


def bundle_for(node: Node, app_key: str, gen_app_key: str | None = None,
               fuota_pub: str | None = None) -> dict[str, Any]:
    """The node config bundle: what ``citynode flash`` copies onto the node so that it can join, and take
    FUOTA updates (``gen_app_key``; ``fuota_pub`` when an update key was given)."""
    s = ROLE_SETTINGS[node.role]
    extra: dict[str, Any] = {}
    if gen_app_key is not None:
        extra["gen_app_key"] = gen_app_key
    if fuota_pub is not None:
        extra["fuota_pub"] = fuota_pub
    return {
        "format": BUNDLE_FORMAT,
        "dev_eui": node.dev_eui,
        "join_eui": node.join_eui,
        "app_key": app_key,
        **extra,
        "name": node.name,
        "role": node.role,
        "board": node.board,
        "region": REGION,
        "lorawan": MAC_VERSION,
        "fport": s.fport,
        # Same names and units as the config downlink (codecs/schema.json "config"): s and h.
        "intervals": {"interval": s.uplink_interval_s, "status_interval": s.status_interval_h},
        "location": None if node.lat is None else {"lat": node.lat, "lon": node.lon},
    }


def _bundle_bytes(bundle: Mapping[str, Any]) -> bytes:
    return (json.dumps(bundle, indent=2, sort_keys=True) + "\n").encode()


# -- the plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One object and what provisioning will do with it.

    ``kind`` is application / device-profile / device / keys / bundle; ``key`` identifies it (the
    application name, the role, the DevEUI); ``changes`` names the fields that differ (never values:
    keys must not reach the terminal).
    """

    kind: str
    key: str
    label: str
    action: str  # create | update | unchanged | conflict
    changes: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        return self.action in ("create", "update")


@dataclass
class Plan:
    """Everything :func:`apply_plan` needs: the steps plus the state they were computed from."""

    tenant_id: str
    application_name: str
    codec_script: str
    bundles_dir: Path
    nodes: list[Node]
    steps: list[Step] = field(default_factory=list)
    application_id: str | None = None
    application: api.Application | None = None
    profiles: dict[str, api.DeviceProfile] = field(default_factory=dict)  # role -> existing profile
    devices: dict[str, api.Device] = field(default_factory=dict)  # dev_eui -> existing device
    keys: dict[str, str] = field(default_factory=dict, repr=False)  # dev_eui -> AppKey to use
    key_sources: dict[str, str] = field(default_factory=dict)  # dev_eui -> inventory|chirpstack|bundle|generated
    gen_keys: dict[str, str] = field(default_factory=dict, repr=False)  # dev_eui -> GenAppKey to use
    gen_key_sources: dict[str, str] = field(default_factory=dict)  # as key_sources
    fuota_pubs: dict[str, str] = field(default_factory=dict)  # dev_eui -> the bundle's fuota_pub (public)
    unmanaged_devices: int = 0  # devices in the application that the inventory does not list

    @property
    def pending(self) -> list[Step]:
        return [s for s in self.steps if s.pending]

    @property
    def conflicts(self) -> list[Step]:
        return [s for s in self.steps if s.action == "conflict"]

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "unchanged": 0, "conflict": 0}
        for s in self.steps:
            out[s.action] += 1
        return out


def _value(message: Any, name: str) -> Any:
    value = getattr(message, name)
    return dict(value) if name in ("tags", "variables") else value


def _diff(actual: Any, desired: Any, fields: Iterable[str]) -> tuple[str, ...]:
    """Names of the fields that differ; for tags also which keys (tag values are not secret)."""
    changes = []
    for name in fields:
        have, want = _value(actual, name), _value(desired, name)
        if have == want:
            continue
        if name == "tags":
            keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            changes.append(f"tags ({', '.join(keys)})")
        else:
            changes.append(name)
    return tuple(changes)


def _read_bundle(path: Path) -> tuple[bytes | None, int | None]:
    try:
        st = path.stat()
        return path.read_bytes(), stat.S_IMODE(st.st_mode)
    except FileNotFoundError:
        return None, None


def _bundle_key(content: bytes | None, name: str = "app_key", digits: int = 32) -> str | None:
    """A hex field of an existing bundle (lower case), or None when absent or malformed."""
    if content is None:
        return None
    try:
        key = json.loads(content).get(name)
    except (ValueError, AttributeError):
        return None
    if isinstance(key, str) and len(key) == digits and all(c in "0123456789abcdef" for c in key.lower()):
        return key.lower()
    return None


def _set_key(key: str | None) -> str | None:
    """A key as ChirpStack returns it, None when unset (ChirpStack reads an unset key as all zeros)."""
    key = (key or "").lower()
    return None if not key or key == _ZERO_KEY else key


def make_plan(
    client: ChirpStackClient,
    nodes: Sequence[Node],
    *,
    tenant_id: str,
    application_name: str,
    codec_script: str,
    bundles_dir: Path,
    fuota_pub: str | None = None,
    new_key: Callable[[], str] = lambda: secrets.token_hex(16),
) -> Plan:
    """Compare the inventory with ChirpStack and the bundle directory; change nothing.

    ``fuota_pub`` (64 hex digits, the update key's public half) goes into every bundle; without it a
    bundle keeps the one it has.

    Raises ChirpStackError subclasses when ChirpStack cannot be read (bad token, unknown tenant,
    unreachable server), and ConfigError for an ambiguous application name.
    """
    check_bundles_dir(Path(bundles_dir))
    client.get_tenant(tenant_id)  # fails early and clearly on a wrong token or tenant id
    plan = Plan(tenant_id, application_name, codec_script, Path(bundles_dir), list(nodes))

    # Application: found by exact name within the tenant.
    matches = [a for a in client.list_applications(tenant_id) if a.name == application_name]
    if len(matches) > 1:
        raise ConfigError(
            f"--application {application_name!r}: {len(matches)} applications of tenant {tenant_id} have this "
            "name; rename the extra ones in ChirpStack"
        )
    want_app = desired_application(tenant_id, application_name)
    if matches:
        plan.application_id = matches[0].id
        plan.application = client.get_application(matches[0].id)
        changes = _diff(plan.application, want_app, _APPLICATION_FIELDS)
        plan.steps.append(Step("application", application_name, application_name,
                               "update" if changes else "unchanged", changes))
    else:
        plan.steps.append(Step("application", application_name, application_name, "create"))

    # Device profiles: one per role used in the inventory, found by name.
    roles = [r for r in ROLES if any(n.role == r for n in nodes)]
    by_name = {p.name: p for p in client.list_device_profiles(tenant_id)}
    for role in roles:
        name = profile_name(role)
        want = desired_profile(tenant_id, role, codec_script)
        if name in by_name:
            plan.profiles[role] = client.get_device_profile(by_name[name].id)
            changes = _diff(plan.profiles[role], want, _PROFILE_FIELDS)
            plan.steps.append(Step("device-profile", role, name, "update" if changes else "unchanged", changes))
        else:
            plan.steps.append(Step("device-profile", role, name, "create"))

    # Devices, keys, bundles.
    inventory_euis = {n.dev_eui for n in nodes}
    if plan.application_id is not None:
        plan.unmanaged_devices = sum(
            1 for d in client.list_devices(plan.application_id) if d.dev_eui not in inventory_euis
        )
    for node in nodes:
        label = f"{node.dev_eui} {node.name}"
        existing = client.get_device(node.dev_eui)
        if existing is not None and existing.application_id != plan.application_id:
            why = (f"registered in application {existing.application_id}; delete it there first, "
                   "provisioning never moves devices between applications")
            plan.steps.append(Step("device", node.dev_eui, label, "conflict", (why,)))
            continue
        profile = plan.profiles.get(node.role)
        want = desired_device(node, plan.application_id or "", profile.id if profile else "")
        if existing is None:
            plan.steps.append(Step("device", node.dev_eui, label, "create"))
            actual_key = actual_gen = None
        else:
            plan.devices[node.dev_eui] = existing
            changes = _diff(existing, want, _DEVICE_FIELDS)
            plan.steps.append(Step("device", node.dev_eui, label, "update" if changes else "unchanged", changes))
            keys = client.get_keys(node.dev_eui)
            actual_key = keys.nwk_key.lower() if keys is not None else None
            actual_gen = _set_key(keys.gen_app_key) if keys is not None else None

        bundle_path = plan.bundles_dir / f"{node.dev_eui}.json"
        content, mode = _read_bundle(bundle_path)
        # Both keys: the inventory's, else the one ChirpStack has, else the bundle's (a node may have been
        # flashed with it), else a new one.
        candidates = [(node.app_key, "inventory"), (actual_key, "chirpstack"), (_bundle_key(content), "bundle")]
        key, source = next(((k, s) for k, s in candidates if k), (None, "generated"))
        if key is None:
            key = new_key()
        plan.keys[node.dev_eui], plan.key_sources[node.dev_eui] = key, source
        candidates = [(node.gen_app_key, "inventory"), (actual_gen, "chirpstack"),
                      (_bundle_key(content, "gen_app_key"), "bundle")]
        gen, gen_source = next(((k, s) for k, s in candidates if k), (None, "generated"))
        if gen is None:
            gen = new_key()
        plan.gen_keys[node.dev_eui], plan.gen_key_sources[node.dev_eui] = gen, gen_source
        if actual_key is None:
            plan.steps.append(Step("keys", node.dev_eui, label, "create",
                                   (f"nwk_key ({source})", f"gen_app_key ({gen_source})")))
        else:
            changes = ("nwk_key (inventory)",) if actual_key != key else ()
            if actual_gen != gen:
                changes += (f"gen_app_key ({gen_source})",)
            plan.steps.append(Step("keys", node.dev_eui, label, "update" if changes else "unchanged", changes))

        pub = fuota_pub or _bundle_key(content, "fuota_pub", 64)
        if pub is not None:
            plan.fuota_pubs[node.dev_eui] = pub
        bundle = bundle_for(node, key, gen, pub)
        want_bundle = _bundle_bytes(bundle)
        if content is None:
            plan.steps.append(Step("bundle", node.dev_eui, label, "create"))
        else:
            changes = () if content == want_bundle else _bundle_changes(content, bundle)
            if mode != 0o600:
                changes += (f"permissions {mode:04o} -> 0600",)
            plan.steps.append(Step("bundle", node.dev_eui, label, "update" if changes else "unchanged", changes))
    return plan


def _bundle_changes(content: bytes, want: Mapping[str, Any]) -> tuple[str, ...]:
    try:
        have = json.loads(content)
    except ValueError:
        return ("not valid JSON",)
    if not isinstance(have, dict):
        return ("not a JSON object",)
    return tuple(sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))) or ("formatting",)


# -- applying it -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    step: Step
    status: str  # done | failed | skipped
    message: str = ""


@dataclass
class Report:
    """What :func:`apply_plan` did, step by step, in execution order."""

    outcomes: list[Outcome] = field(default_factory=list)

    def by_status(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def ok(self) -> bool:
        return not self.by_status("failed") and not self.by_status("skipped")


def check_bundles_dir(path: Path) -> None:
    """Refuse a bundle directory that exists and is not private (bundles hold OTAA keys)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"--bundles {path}: exists and is not a directory")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"--bundles {path}: others can read it (mode {mode:04o}); bundles hold OTAA keys, "
            f"so run `chmod 700 {path}` or choose a new directory"
        )


def _ensure_bundles_dir(path: Path) -> None:
    if path.exists():
        check_bundles_dir(path)
        return
    path.mkdir(mode=0o700, parents=True)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def write_bundle(path: Path, bundle: Mapping[str, Any]) -> None:
    """Write a bundle atomically with mode 0600 (created that way, never widened even for a moment)."""
    fd, tmp = tempfile.mkstemp(prefix=".bundle-", suffix=".tmp", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_bundle_bytes(bundle))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_plan(
    client: ChirpStackClient, plan: Plan, *, progress: Callable[[Step], None] | None = None
) -> Report:
    """Carry out the plan's pending steps in dependency order; never raises for a failed step.

    A failed step is recorded and the steps that depend on it are skipped (a device whose creation
    failed gets no keys and no bundle; a failed device profile skips the devices of that role). When
    ChirpStack refuses the token or cannot be reached, every remaining step is skipped.
    """
    report = Report()
    nodes = {n.dev_eui: n for n in plan.nodes}
    failed_keys: set[tuple[str, str]] = set()  # (kind, key) that failed or were skipped
    abort: str | None = None
    if any(s.kind == "bundle" and s.pending for s in plan.steps):
        _ensure_bundles_dir(plan.bundles_dir)

    def blocked(step: Step) -> str | None:
        if abort:
            return abort
        if step.kind in ("device", "keys", "bundle"):
            node = nodes[step.key]
            if ("application", plan.application_name) in failed_keys:
                return "the application was not created"
            if ("device-profile", node.role) in failed_keys:
                return f"device profile {profile_name(node.role)} failed"
            for kind in _KIND_ORDER[2:]:
                if kind == step.kind:
                    break
                if (kind, step.key) in failed_keys:
                    return f"its {kind} step failed"
        return None

    for step in plan.steps:
        if progress is not None:
            progress(step)
        if step.action == "conflict":
            failed_keys.add((step.kind, step.key))
            report.outcomes.append(Outcome(step, "failed", step.changes[0] if step.changes else "conflict"))
            continue
        if not step.pending:
            continue
        why = blocked(step)
        if why:
            failed_keys.add((step.kind, step.key))
            report.outcomes.append(Outcome(step, "skipped", why))
            continue
        try:
            _apply_step(client, plan, step, nodes)
        except (ChirpStackAuthError, ChirpStackUnavailable) as exc:
            failed_keys.add((step.kind, step.key))
            report.outcomes.append(Outcome(step, "failed", str(exc)))
            abort = "not attempted: ChirpStack became unusable (see the failure above)"
        except (ChirpStackError, OSError) as exc:
            failed_keys.add((step.kind, step.key))
            report.outcomes.append(Outcome(step, "failed", str(exc)))
        else:
            report.outcomes.append(Outcome(step, "done"))
    return report


def _apply_step(client: ChirpStackClient, plan: Plan, step: Step, nodes: Mapping[str, Node]) -> None:
    if step.kind == "application":
        want = desired_application(plan.tenant_id, plan.application_name)
        if step.action == "create":
            plan.application_id = client.create_application(want)
        else:
            msg = api.Application()
            msg.CopyFrom(plan.application)
            for name in _APPLICATION_FIELDS:
                _set(msg, name, _value(want, name))
            client.update_application(msg)
    elif step.kind == "device-profile":
        want = desired_profile(plan.tenant_id, step.key, plan.codec_script)
        if step.action == "create":
            want.id = client.create_device_profile(want)
            plan.profiles[step.key] = want
        else:
            msg = api.DeviceProfile()
            msg.CopyFrom(plan.profiles[step.key])
            for name in _PROFILE_FIELDS:
                _set(msg, name, _value(want, name))
            client.update_device_profile(msg)
    elif step.kind == "device":
        node = nodes[step.key]
        assert plan.application_id is not None
        want = desired_device(node, plan.application_id, plan.profiles[node.role].id)
        if step.action == "create":
            client.create_device(want)
        else:
            msg = api.Device()
            msg.CopyFrom(plan.devices[step.key])
            for name in _DEVICE_FIELDS:
                _set(msg, name, _value(want, name))
            client.update_device(msg)
    elif step.kind == "keys":
        # ChirpStack's update replaces all three keys: always send them all.
        keys = api.DeviceKeys(dev_eui=step.key, nwk_key=plan.keys[step.key], app_key=_ZERO_KEY,
                              gen_app_key=plan.gen_keys[step.key])
        if step.action == "create":
            client.create_keys(keys)
        else:
            client.update_keys(keys)
    elif step.kind == "bundle":
        node = nodes[step.key]
        write_bundle(plan.bundles_dir / f"{node.dev_eui}.json",
                     bundle_for(node, plan.keys[step.key], plan.gen_keys[step.key], plan.fuota_pubs.get(step.key)))
    else:  # pragma: no cover - the plan only makes the kinds above
        raise AssertionError(step.kind)


def _set(message: Any, name: str, value: Any) -> None:
    if isinstance(value, Message):  # a message field cannot be assigned, only copied into
        getattr(message, name).CopyFrom(value)
    elif isinstance(value, dict):
        target = getattr(message, name)
        target.clear()
        target.update(value)
    else:
        setattr(message, name, value)
