"""A ChirpStack v4 API **simulator** for tests and demos: never a ChirpStack replacement.

It is a real gRPC server built on the servicer base classes of the ``chirpstack-api`` package, so a
client talks to it exactly as it talks to ChirpStack's API (same services, same protobuf messages, same
``authorization: Bearer <token>`` metadata). Behind the API there is only an in-memory dictionary: no
network server, no radio, no join handling, no persistence. Use it to rehearse ``citynode provision``
and ``citynode gateway downlink`` and to test them; provision real networks against a real ChirpStack.

Behaviours reproduced from ChirpStack v4 (``chirpstack/src/api/*.rs`` and ``storage/error.rs``):

* every call needs ``authorization: Bearer <token>`` metadata, else ``UNAUTHENTICATED``;
* ids of tenants, applications and device profiles are random UUID strings (lower-case, hyphenated);
* a DevEUI / JoinEUI is 8 bytes as 16 hex digits, an AES-128 key 16 bytes as 32 hex digits; anything
  else is ``INVALID_ARGUMENT``; DevEUIs are stored and returned in lower case;
* a second ``Create`` of the same DevEUI, or ``CreateKeys`` for a device that has keys, is
  ``ALREADY_EXISTS`` with the message ``Object already exists (id: ...)``;
* ``Get`` / ``Update`` / ``Delete`` of an unknown object is ``NOT_FOUND`` with
  ``Object does not exist (id: ...)``;
* a device's application and device profile must belong to the same tenant;
* ``List`` pages with ``limit`` / ``offset`` and reports ``total_count`` (a limit of 0 returns no items,
  as in ChirpStack, so clients must ask for a page size);
* a downlink's FPort must be 1..223 (LoRaWAN 1.0.4 section 4.3.2: 0 carries MAC commands only,
  224 is the MAC test port, 225..255 are reserved); ``data`` must not be empty unless an ``object`` is
  given (objects need the profile's codec, which the simulator does not run: ``INVALID_ARGUMENT``).

``FuotaService`` (``api/fuota.proto``) follows ``chirpstack/src/api/fuota.rs`` and ``storage/fuota.rs``:
deployments with a random multicast address and key, ``calculate_fragmentation_fragment_size`` (the
region's largest downlink payload at the multicast DR minus 3, capped at the payload's length: EU868
only here) and ``calculate_multicast_timeout`` (``multicast_class_c_margin`` 5 s, ChirpStack's
default); changes after ``StartDeployment`` are ``FAILED_PRECONDITION`` "FUOTA deployment has already
started"; devices must belong to the deployment's application and device profile (else
``INVALID_ARGUMENT`` "Validation error: All devices must have the same device-profile as the FUOTA
deployment"), a device added twice is ``INVALID_ARGUMENT`` listing ``Object already exists (id: ...)``;
a malformed DevEUI or gateway id is ``INTERNAL`` with the hex decoder's message (as ChirpStack, whose
``EUI64::from_str`` error maps to INTERNAL); ``StartDeployment`` queues the job ``CREATE_MC_GROUP``.
The deployment is carried out by the network-server simulator (:mod:`gateway.sim.nssim.fuota`),
which registers itself in :attr:`SimState.fuota_listeners` and records per-device progress, errors
and the job list here, where ``ListDevices`` / ``ListJobs`` read them.

Differences a test writer should know: API tokens are compared as opaque strings (ChirpStack's are JWTs
and can be scoped to a tenant); the simulator keeps no users, multicast groups or integrations, and
gateways only as ids with their tenant (:meth:`SimState.add_gateway`, for FUOTA's ``AddGateways``).

For failure-injection tests :meth:`SimState.inject_fault` makes one method fail for one object id.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import grpc
from chirpstack_api import api, common
from google.protobuf import empty_pb2, timestamp_pb2

__all__ = [
    "DEFAULT_TENANT_ID",
    "ChirpStackSimulator",
    "SimState",
    "StoredDevice",
    "StoredFuota",
]

# The tenant ChirpStack v4 creates in its initial database migration ("ChirpStack"); the simulator
# creates the same one so that examples work unchanged against a fresh ChirpStack and the simulator.
DEFAULT_TENANT_ID = "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"

_T = TypeVar("_T")


class _Abort(Exception):
    """Raised inside the state layer; the servicer turns it into ``context.abort(code, message)``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(ident: str) -> _Abort:
    return _Abort(grpc.StatusCode.NOT_FOUND, f"Object does not exist (id: {ident})")


def _already_exists(ident: str) -> _Abort:
    return _Abort(grpc.StatusCode.ALREADY_EXISTS, f"Object already exists (id: {ident})")


def _invalid(message: str) -> _Abort:
    return _Abort(grpc.StatusCode.INVALID_ARGUMENT, message)


def _hex_bytes(value: str, field_name: str, size: int, *, secret: bool = False) -> str:
    """Parse exactly ``size`` bytes written as hex; return lower case. A secret is never echoed."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != size or len(value) != 2 * size:
        shown = "" if secret else f", got {value!r}"
        raise _invalid(f"{field_name}: expected {2 * size} hex digits ({size} bytes){shown}")
    return raw.hex()


def _eui64(value: str, field_name: str) -> str:
    """Parse a 64-bit EUI (16 hex digits) as ChirpStack's ``EUI64::from_str`` does; return lower case."""
    return _hex_bytes(value, field_name, 8)


def _aes128(value: str, field_name: str) -> str:
    """Parse an AES-128 key (32 hex digits) as ChirpStack's ``AES128Key::from_str`` does."""
    return _hex_bytes(value, field_name, 16, secret=True)


def _uuid(value: str, field_name: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _invalid(f"{field_name}: not a UUID: {value!r}") from None


def _uuid_rs(value: str) -> str:
    """Parse a UUID as ChirpStack's API does (``Uuid::from_str``): a bad one is INVALID_ARGUMENT with
    the message of Rust's ``uuid`` crate (length first, then the first bad character)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    text = value.removeprefix("urn:uuid:")
    if len(text) not in (32, 36, 38):
        raise _invalid(f"invalid length: expected length 32 for simple format, found {len(text)}")
    bad = next((i for i, c in enumerate(text) if c not in "0123456789abcdefABCDEF-{}"), 0)
    raise _invalid(
        f"invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], "
        f"found `{text[bad]}` at {bad + 1}"
    )


def _eui64_rs(value: str) -> str:
    """Parse an EUI-64 as ChirpStack's ``lrwn::EUI64::from_str``: the empty string is all zeros; a
    bad one fails in the ``hex`` crate, whose error the API returns as INTERNAL with its message."""
    if not value:
        return "0" * 16
    for i, c in enumerate(value):
        if c not in "0123456789abcdefABCDEF":
            raise _Abort(grpc.StatusCode.INTERNAL, f"Invalid character {c!r} at position {i}")
    if len(value) % 2:
        raise _Abort(grpc.StatusCode.INTERNAL, "Odd number of digits")
    if len(value) != 16:
        raise _Abort(grpc.StatusCode.INTERNAL, "Invalid string length")
    return value.lower()


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def _page(items: Sequence[_T], limit: int, offset: int) -> list[_T]:
    return list(items[offset : offset + limit])


@dataclass
class StoredDevice:
    """One device as the simulator keeps it: the protobuf message plus what ChirpStack keeps beside it."""

    device: api.Device
    created_at: timestamp_pb2.Timestamp
    updated_at: timestamp_pb2.Timestamp
    keys: api.DeviceKeys | None = None
    queue: list[api.DeviceQueueItem] = field(default_factory=list)
    f_cnt_down: int = 0
    # TS004 v2 SessionCnt of FragIndex 0 (ChirpStack: the device's app_layer_params.ts004_session_cnt[0]),
    # incremented by every FragSessionSetupReq the FUOTA flow sends
    ts004_session_cnt: int = 0


@dataclass
class StoredFuota:
    """One FUOTA deployment: the protobuf message plus what ChirpStack keeps beside it (its
    ``fuota_deployment`` row: multicast address and key, session times; the device, gateway and job
    rows). Devices and jobs are the API's list items, updated in place by the network simulator."""

    deployment: api.FuotaDeployment
    created_at: timestamp_pb2.Timestamp
    updated_at: timestamp_pb2.Timestamp
    multicast_addr: int
    multicast_key: bytes = field(repr=False)
    started_at: timestamp_pb2.Timestamp | None = None
    completed_at: timestamp_pb2.Timestamp | None = None
    devices: dict[str, api.FuotaDeploymentDeviceListItem] = field(default_factory=dict)
    gateways: dict[str, api.FuotaDeploymentGatewayListItem] = field(default_factory=dict)
    jobs: list[api.FuotaDeploymentJob] = field(default_factory=list)


@dataclass
class _Fault:
    code: grpc.StatusCode
    message: str
    remaining: int


class SimState:
    """The in-memory database behind the simulator; every method is thread-safe.

    The dictionaries are public so that tests can look at what a client did, but tests should change
    state only through the API (or :meth:`inject_fault`), as a client of ChirpStack would.
    """

    def __init__(self, *, default_tenant: bool = True) -> None:
        self.lock = threading.RLock()
        self.tenants: dict[str, api.Tenant] = {}
        self.applications: dict[str, api.Application] = {}
        self.device_profiles: dict[str, api.DeviceProfile] = {}
        self.devices: dict[str, StoredDevice] = {}
        self.calls: list[str] = []  # "Service.Method" in call order, for tests that count round trips
        # Called with each enqueued DeviceQueueItem (the hand-off to the network-server simulator:
        # gateway.sim.nssim.commands.connect_api_queue); the item stays queued until transmitted.
        self.queue_listeners: list[Callable[[api.DeviceQueueItem], None]] = []
        self.fuota: dict[str, StoredFuota] = {}
        self.gateways: dict[str, str] = {}  # gateway id (16 hex digits) -> tenant id
        # Called with the deployment id after StartDeployment (the hand-off to the network-server
        # simulator: gateway.sim.nssim.fuota.FuotaRunner.attach), under no lock.
        self.fuota_listeners: list[Callable[[str], None]] = []
        self._faults: dict[tuple[str, str], _Fault] = {}
        if default_tenant:
            self.tenants[DEFAULT_TENANT_ID] = api.Tenant(
                id=DEFAULT_TENANT_ID, name="ChirpStack", can_have_gateways=True
            )

    # -- downlink queue hand-off --------------------------------------------------------------------
    def queued_items(self) -> list[api.DeviceQueueItem]:
        """Every device's queued items, oldest first per device."""
        with self.lock:
            return [item for dev in self.devices.values() for item in dev.queue]

    def remove_queue_item(self, dev_eui: str, item_id: str) -> bool:
        """Drop a transmitted item from its device's queue (ChirpStack deletes it once sent)."""
        with self.lock:
            dev = self.devices.get(dev_eui.lower())
            if dev is None:
                return False
            kept = [item for item in dev.queue if item.id != item_id]
            removed = len(kept) != len(dev.queue)
            dev.queue[:] = kept
            return removed

    def add_gateway(self, gateway_id: str, tenant_id: str = DEFAULT_TENANT_ID) -> None:
        """Register a gateway of ``tenant_id`` (the simulator has no GatewayService)."""
        with self.lock:
            self.tenant(tenant_id)
            self.gateways[_eui64(gateway_id, "gateway_id")] = tenant_id

    def deployment(self, deployment_id: str) -> StoredFuota:
        deployment_id = _uuid_rs(deployment_id)
        if deployment_id not in self.fuota:
            raise _not_found(deployment_id)
        return self.fuota[deployment_id]

    # -- failure injection -------------------------------------------------------------------------
    def inject_fault(
        self,
        method: str,
        ident: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.INTERNAL,
        message: str = "injected fault",
        times: int = 1,
    ) -> None:
        """Make ``method`` (e.g. ``"DeviceService.Create"``) fail ``times`` times for object ``ident``.

        ``ident`` is the DevEUI for device calls, the name for Create of applications / profiles and
        the id otherwise. Used by tests of partial failures and reruns.
        """
        with self.lock:
            self._faults[(method, ident.lower())] = _Fault(code, message, times)

    def check_fault(self, method: str, ident: str) -> None:
        with self.lock:
            self.calls.append(method)
            fault = self._faults.get((method, ident.lower()))
            if fault is None:
                return
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[(method, ident.lower())]
            raise _Abort(fault.code, fault.message)

    # -- lookups -----------------------------------------------------------------------------------
    def tenant(self, tenant_id: str) -> api.Tenant:
        tenant_id = _uuid(tenant_id, "tenant_id")
        if tenant_id not in self.tenants:
            raise _not_found(tenant_id)
        return self.tenants[tenant_id]

    def application(self, application_id: str) -> api.Application:
        application_id = _uuid(application_id, "application_id")
        if application_id not in self.applications:
            raise _not_found(application_id)
        return self.applications[application_id]

    def device_profile(self, profile_id: str) -> api.DeviceProfile:
        profile_id = _uuid(profile_id, "device_profile_id")
        if profile_id not in self.device_profiles:
            raise _not_found(profile_id)
        return self.device_profiles[profile_id]

    def device(self, dev_eui: str) -> StoredDevice:
        dev_eui = _eui64(dev_eui, "dev_eui")
        if dev_eui not in self.devices:
            raise _not_found(dev_eui)
        return self.devices[dev_eui]


# --------------------------------------------------------------------------------------------------
# Servicers. Each method takes the lock, may raise _Abort, and is wrapped by _rpc() which aborts the
# call with the matching status code.
# --------------------------------------------------------------------------------------------------


def _rpc(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def method(self: _Base, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                with self.state.lock:
                    return fn(self, request)
            except _Abort as exc:
                context.abort(exc.code, exc.message)

        method.__name__ = fn.__name__
        method.__doc__ = f"{name}: {fn.__doc__ or ''}"
        return method

    return wrap


class _Base:
    def __init__(self, state: SimState) -> None:
        self.state = state


class _TenantService(_Base, api.TenantServiceServicer):
    @_rpc("TenantService.Create")
    def Create(self, request: api.CreateTenantRequest) -> api.CreateTenantResponse:
        if not request.tenant.name:
            raise _invalid("tenant.name: must not be empty")
        tenant = api.Tenant()
        tenant.CopyFrom(request.tenant)
        tenant.id = str(uuid.uuid4())
        self.state.tenants[tenant.id] = tenant
        return api.CreateTenantResponse(id=tenant.id)

    @_rpc("TenantService.Get")
    def Get(self, request: api.GetTenantRequest) -> api.GetTenantResponse:
        self.state.check_fault("TenantService.Get", request.id)
        return api.GetTenantResponse(tenant=self.state.tenant(request.id), created_at=_now())

    @_rpc("TenantService.List")
    def List(self, request: api.ListTenantsRequest) -> api.ListTenantsResponse:
        tenants = sorted(self.state.tenants.values(), key=lambda t: t.name)
        if request.search:
            tenants = [t for t in tenants if request.search.lower() in t.name.lower()]
        return api.ListTenantsResponse(
            total_count=len(tenants),
            result=[
                api.TenantListItem(id=t.id, name=t.name, can_have_gateways=t.can_have_gateways)
                for t in _page(tenants, request.limit, request.offset)
            ],
        )


class _ApplicationService(_Base, api.ApplicationServiceServicer):
    @_rpc("ApplicationService.Create")
    def Create(self, request: api.CreateApplicationRequest) -> api.CreateApplicationResponse:
        app = request.application
        if not app.name:
            raise _invalid("application.name: must not be empty")
        self.state.tenant(app.tenant_id)
        self.state.check_fault("ApplicationService.Create", app.name)
        stored = api.Application()
        stored.CopyFrom(app)
        stored.id = str(uuid.uuid4())
        stored.tenant_id = _uuid(app.tenant_id, "tenant_id")
        self.state.applications[stored.id] = stored
        return api.CreateApplicationResponse(id=stored.id)

    @_rpc("ApplicationService.Get")
    def Get(self, request: api.GetApplicationRequest) -> api.GetApplicationResponse:
        return api.GetApplicationResponse(application=self.state.application(request.id), created_at=_now())

    @_rpc("ApplicationService.Update")
    def Update(self, request: api.UpdateApplicationRequest) -> empty_pb2.Empty:
        app = request.application
        stored = self.state.application(app.id)
        if not app.name:
            raise _invalid("application.name: must not be empty")
        self.state.check_fault("ApplicationService.Update", app.id)
        # ChirpStack updates name, description and tags; the tenant of an application never changes.
        stored.name, stored.description = app.name, app.description
        stored.tags.clear()
        stored.tags.update(app.tags)
        return empty_pb2.Empty()

    @_rpc("ApplicationService.Delete")
    def Delete(self, request: api.DeleteApplicationRequest) -> empty_pb2.Empty:
        self.state.application(request.id)
        del self.state.applications[request.id]
        for dev_eui in [e for e, d in self.state.devices.items() if d.device.application_id == request.id]:
            del self.state.devices[dev_eui]
        return empty_pb2.Empty()

    @_rpc("ApplicationService.List")
    def List(self, request: api.ListApplicationsRequest) -> api.ListApplicationsResponse:
        self.state.tenant(request.tenant_id)
        apps = sorted(
            (a for a in self.state.applications.values() if a.tenant_id == request.tenant_id),
            key=lambda a: a.name,
        )
        if request.search:
            apps = [a for a in apps if request.search.lower() in a.name.lower()]
        return api.ListApplicationsResponse(
            total_count=len(apps),
            result=[
                api.ApplicationListItem(id=a.id, name=a.name, description=a.description)
                for a in _page(apps, request.limit, request.offset)
            ],
        )


class _DeviceProfileService(_Base, api.DeviceProfileServiceServicer):
    @staticmethod
    def _validate(profile: api.DeviceProfile) -> None:
        if not profile.name:
            raise _invalid("device_profile.name: must not be empty")
        if profile.payload_codec_runtime == api.CodecRuntime.JS and not profile.payload_codec_script:
            raise _invalid("device_profile.payload_codec_script: must be set when the codec runtime is JS")

    @_rpc("DeviceProfileService.Create")
    def Create(self, request: api.CreateDeviceProfileRequest) -> api.CreateDeviceProfileResponse:
        profile = request.device_profile
        self._validate(profile)
        self.state.tenant(profile.tenant_id)
        self.state.check_fault("DeviceProfileService.Create", profile.name)
        stored = api.DeviceProfile()
        stored.CopyFrom(profile)
        stored.id = str(uuid.uuid4())
        self.state.device_profiles[stored.id] = stored
        return api.CreateDeviceProfileResponse(id=stored.id)

    @_rpc("DeviceProfileService.Get")
    def Get(self, request: api.GetDeviceProfileRequest) -> api.GetDeviceProfileResponse:
        return api.GetDeviceProfileResponse(
            device_profile=self.state.device_profile(request.id), created_at=_now()
        )

    @_rpc("DeviceProfileService.Update")
    def Update(self, request: api.UpdateDeviceProfileRequest) -> empty_pb2.Empty:
        profile = request.device_profile
        stored = self.state.device_profile(profile.id)
        self._validate(profile)
        self.state.check_fault("DeviceProfileService.Update", profile.id)
        tenant_id = stored.tenant_id
        stored.CopyFrom(profile)  # ChirpStack's update replaces every settable field
        stored.tenant_id = tenant_id
        return empty_pb2.Empty()

    @_rpc("DeviceProfileService.Delete")
    def Delete(self, request: api.DeleteDeviceProfileRequest) -> empty_pb2.Empty:
        self.state.device_profile(request.id)
        if any(d.device.device_profile_id == request.id for d in self.state.devices.values()):
            # PostgreSQL's foreign key (device.device_profile_id) refuses this in ChirpStack too.
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, "device profile is used by devices")
        del self.state.device_profiles[request.id]
        return empty_pb2.Empty()

    @_rpc("DeviceProfileService.List")
    def List(self, request: api.ListDeviceProfilesRequest) -> api.ListDeviceProfilesResponse:
        self.state.tenant(request.tenant_id)
        profiles = sorted(
            (p for p in self.state.device_profiles.values() if p.tenant_id == request.tenant_id),
            key=lambda p: p.name,
        )
        if request.search:
            profiles = [p for p in profiles if request.search.lower() in p.name.lower()]
        return api.ListDeviceProfilesResponse(
            total_count=len(profiles),
            result=[
                api.DeviceProfileListItem(
                    id=p.id,
                    name=p.name,
                    region=p.region,
                    mac_version=p.mac_version,
                    reg_params_revision=p.reg_params_revision,
                    supports_otaa=p.supports_otaa,
                    supports_class_b=p.supports_class_b,
                    supports_class_c=p.supports_class_c,
                )
                for p in _page(profiles, request.limit, request.offset)
            ],
        )


class _DeviceService(_Base, api.DeviceServiceServicer):
    def _validate(self, device: api.Device) -> tuple[str, api.Application, api.DeviceProfile]:
        dev_eui = _eui64(device.dev_eui, "device.dev_eui")
        if not device.name:
            raise _invalid("device.name: must not be empty")
        if device.join_eui:
            _eui64(device.join_eui, "device.join_eui")
        app = self.state.application(device.application_id)
        profile = self.state.device_profile(device.device_profile_id)
        if app.tenant_id != profile.tenant_id:
            raise _invalid("The application and device profile must be under the same tenant")
        return dev_eui, app, profile

    @_rpc("DeviceService.Create")
    def Create(self, request: api.CreateDeviceRequest) -> empty_pb2.Empty:
        dev_eui, _app, _profile = self._validate(request.device)
        self.state.check_fault("DeviceService.Create", dev_eui)
        if dev_eui in self.state.devices:
            raise _already_exists(dev_eui)
        stored = api.Device()
        stored.CopyFrom(request.device)
        stored.dev_eui = dev_eui
        stored.join_eui = stored.join_eui.lower()
        now = _now()
        self.state.devices[dev_eui] = StoredDevice(stored, now, now)
        return empty_pb2.Empty()

    @_rpc("DeviceService.Get")
    def Get(self, request: api.GetDeviceRequest) -> api.GetDeviceResponse:
        dev = self.state.device(request.dev_eui)
        return api.GetDeviceResponse(device=dev.device, created_at=dev.created_at, updated_at=dev.updated_at)

    @_rpc("DeviceService.Update")
    def Update(self, request: api.UpdateDeviceRequest) -> empty_pb2.Empty:
        stored = self.state.device(request.device.dev_eui)
        dev_eui, _app, _profile = self._validate(request.device)
        self.state.check_fault("DeviceService.Update", dev_eui)
        if request.device.application_id != stored.device.application_id:
            # ChirpStack moves a device between applications only within one tenant; the simulator
            # keeps it simple and refuses moves, which provisioning never asks for.
            raise _invalid("device.application_id: moving a device to another application is not simulated")
        stored.device.CopyFrom(request.device)
        stored.device.dev_eui = dev_eui
        stored.device.join_eui = stored.device.join_eui.lower()
        stored.updated_at = _now()
        return empty_pb2.Empty()

    @_rpc("DeviceService.Delete")
    def Delete(self, request: api.DeleteDeviceRequest) -> empty_pb2.Empty:
        self.state.device(request.dev_eui)
        del self.state.devices[_eui64(request.dev_eui, "dev_eui")]
        return empty_pb2.Empty()

    @_rpc("DeviceService.List")
    def List(self, request: api.ListDevicesRequest) -> api.ListDevicesResponse:
        if not request.application_id:
            raise _invalid("application_id: must be given")
        self.state.application(request.application_id)
        devices = sorted(
            (d for d in self.state.devices.values() if d.device.application_id == request.application_id),
            key=lambda d: d.device.name,
        )
        if request.search:
            devices = [d for d in devices if request.search.lower() in d.device.name.lower()]
        items = []
        for d in _page(devices, request.limit, request.offset):
            profile = self.state.device_profiles.get(d.device.device_profile_id)
            items.append(
                api.DeviceListItem(
                    dev_eui=d.device.dev_eui,
                    name=d.device.name,
                    description=d.device.description,
                    device_profile_id=d.device.device_profile_id,
                    device_profile_name=profile.name if profile else "",
                    created_at=d.created_at,
                    updated_at=d.updated_at,
                    tags=dict(d.device.tags),
                )
            )
        return api.ListDevicesResponse(total_count=len(devices), result=items)

    # -- OTAA keys ---------------------------------------------------------------------------------
    @staticmethod
    def _keys(keys: api.DeviceKeys) -> api.DeviceKeys:
        out = api.DeviceKeys(
            dev_eui=_eui64(keys.dev_eui, "device_keys.dev_eui"),
            nwk_key=_aes128(keys.nwk_key, "device_keys.nwk_key"),
            app_key=_aes128(keys.app_key, "device_keys.app_key"),
        )
        if keys.gen_app_key:
            out.gen_app_key = _aes128(keys.gen_app_key, "device_keys.gen_app_key")
        return out

    @_rpc("DeviceService.CreateKeys")
    def CreateKeys(self, request: api.CreateDeviceKeysRequest) -> empty_pb2.Empty:
        dev = self.state.device(request.device_keys.dev_eui)
        keys = self._keys(request.device_keys)
        self.state.check_fault("DeviceService.CreateKeys", keys.dev_eui)
        if dev.keys is not None:
            raise _already_exists(keys.dev_eui)
        dev.keys = keys
        return empty_pb2.Empty()

    @_rpc("DeviceService.GetKeys")
    def GetKeys(self, request: api.GetDeviceKeysRequest) -> api.GetDeviceKeysResponse:
        dev = self.state.device(request.dev_eui)
        if dev.keys is None:
            raise _not_found(dev.device.dev_eui)
        return api.GetDeviceKeysResponse(device_keys=dev.keys, created_at=dev.created_at)

    @_rpc("DeviceService.UpdateKeys")
    def UpdateKeys(self, request: api.UpdateDeviceKeysRequest) -> empty_pb2.Empty:
        dev = self.state.device(request.device_keys.dev_eui)
        keys = self._keys(request.device_keys)
        self.state.check_fault("DeviceService.UpdateKeys", keys.dev_eui)
        if dev.keys is None:
            raise _not_found(keys.dev_eui)
        dev.keys = keys
        return empty_pb2.Empty()

    @_rpc("DeviceService.DeleteKeys")
    def DeleteKeys(self, request: api.DeleteDeviceKeysRequest) -> empty_pb2.Empty:
        dev = self.state.device(request.dev_eui)
        if dev.keys is None:
            raise _not_found(dev.device.dev_eui)
        dev.keys = None
        return empty_pb2.Empty()

    # -- downlink queue ----------------------------------------------------------------------------
    @_rpc("DeviceService.Enqueue")
    def Enqueue(self, request: api.EnqueueDeviceQueueItemRequest) -> api.EnqueueDeviceQueueItemResponse:
        item = request.queue_item
        dev = self.state.device(item.dev_eui)
        if not 1 <= item.f_port <= 223:
            raise _invalid(f"queue_item.f_port: must be 1..223, got {item.f_port}")
        if item.HasField("object"):
            raise _invalid("queue_item.object: the simulator runs no codec; send encoded bytes in data")
        if not item.data:
            raise _invalid("queue_item.data: must not be empty")
        self.state.check_fault("DeviceService.Enqueue", dev.device.dev_eui)
        if request.flush_queue:
            dev.queue.clear()
        stored = api.DeviceQueueItem()
        stored.CopyFrom(item)
        stored.id = str(uuid.uuid4())
        stored.dev_eui = dev.device.dev_eui
        stored.f_cnt_down = dev.f_cnt_down
        dev.f_cnt_down += 1
        dev.queue.append(stored)
        for listener in list(self.state.queue_listeners):
            listener(stored)
        return api.EnqueueDeviceQueueItemResponse(id=stored.id)

    @_rpc("DeviceService.GetQueue")
    def GetQueue(self, request: api.GetDeviceQueueItemsRequest) -> api.GetDeviceQueueItemsResponse:
        dev = self.state.device(request.dev_eui)
        result = [] if request.count_only else list(dev.queue)
        return api.GetDeviceQueueItemsResponse(total_count=len(dev.queue), result=result)

    @_rpc("DeviceService.FlushQueue")
    def FlushQueue(self, request: api.FlushDeviceQueueRequest) -> empty_pb2.Empty:
        self.state.device(request.dev_eui).queue.clear()
        return empty_pb2.Empty()


# ChirpStack's `[network.scheduler] multicast_class_c_margin` default (chirpstack/src/config.rs): one
# Class C multicast downlink every 5 s, used by calculate_multicast_timeout.
MULTICAST_CLASS_C_MARGIN_S = 5
_JOB_CREATE_MC_GROUP = "CREATE_MC_GROUP"


def fragment_count(payload_len: int, fragment_size: int, redundancy_pct: int) -> tuple[int, int]:
    """(uncoded fragments, coded fragments) as ChirpStack computes them (``storage/fuota.rs``)."""
    if fragment_size <= 0:
        return 0, 0
    fragments = -(-payload_len // fragment_size)
    return fragments, -(-fragments * redundancy_pct // 100)


class _FuotaService(_Base, api.FuotaServiceServicer):
    """``api.FuotaService`` as ``chirpstack/src/api/fuota.rs`` implements it (see the module docstring)."""

    def _settings(self, req: api.FuotaDeployment, target: api.FuotaDeployment) -> None:
        # The fields ChirpStack takes from a Create/Update request; the calculate_* flags are not kept.
        for name in (
            "name", "multicast_group_type", "multicast_class_c_scheduling_type", "multicast_dr",
            "multicast_class_b_ping_slot_periodicity", "multicast_frequency", "multicast_timeout",
            "unicast_max_retry_count", "fragmentation_fragment_size", "fragmentation_redundancy_percentage",
            "fragmentation_session_index", "fragmentation_matrix", "fragmentation_block_ack_delay",
            "fragmentation_descriptor", "request_fragmentation_session_status", "payload",
        ):
            setattr(target, name, getattr(req, name))
        target.on_complete_set_device_tags.clear()
        target.on_complete_set_device_tags.update(req.on_complete_set_device_tags)
        if req.calculate_fragmentation_fragment_size:
            profile = self.state.device_profile(target.device_profile_id)
            if profile.region != common.EU868:
                raise _invalid("calculate_fragmentation_fragment_size: the simulator knows EU868 only")
            from gateway.sim.nssim._firmware import region

            try:
                room = region.max_app_payload(target.multicast_dr)
            except ValueError:
                raise _Abort(grpc.StatusCode.INTERNAL, f"Invalid data-rate: {target.multicast_dr}") from None
            target.fragmentation_fragment_size = min(room - 3, len(target.payload))
        if req.calculate_multicast_timeout:
            target.multicast_timeout = self._timeout(target)

    @staticmethod
    def _timeout(d: api.FuotaDeployment) -> int:
        frags, red = fragment_count(len(d.payload), d.fragmentation_fragment_size,
                                    d.fragmentation_redundancy_percentage)
        total = frags + red
        if d.multicast_group_type == api.MulticastGroupType.CLASS_B:
            slots = 1 << (7 - d.multicast_class_b_ping_slot_periodicity)
            need, message = -(-total // slots) + 1, "Max. number of beacon period exceeded"
        else:
            need, message = MULTICAST_CLASS_C_MARGIN_S * (total + 1), "Max timeout exceeded"
        for i in range(16):
            if (1 << i) >= need:
                return i
        raise _Abort(grpc.StatusCode.INTERNAL, message)

    def _same_tenant(self, d: api.FuotaDeployment) -> None:
        profile = self.state.device_profile(d.device_profile_id)
        app = self.state.application(d.application_id)
        if app.tenant_id != profile.tenant_id:
            raise _invalid("Validation error: The application and device-profile must be under the same tenant")

    @staticmethod
    def _not_started(stored: StoredFuota) -> None:
        if stored.started_at is not None:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, "FUOTA deployment has already started")

    @_rpc("FuotaService.CreateDeployment")
    def CreateDeployment(self, request: api.CreateFuotaDeploymentRequest) -> api.CreateFuotaDeploymentResponse:
        if not request.HasField("deployment"):
            raise _invalid("deployment is missing")
        req = request.deployment
        app_id = _uuid_rs(req.application_id)
        profile_id = _uuid_rs(req.device_profile_id)
        self.state.application(app_id)  # tenant::get_for_application_id
        d = api.FuotaDeployment(id=str(uuid.uuid4()), application_id=app_id, device_profile_id=profile_id)
        self.state.device_profile(profile_id)
        self._settings(req, d)
        self._same_tenant(d)
        self.state.check_fault("FuotaService.CreateDeployment", d.name)
        now = _now()
        # get_random_dev_addr with the NetID 000000 prefix (7 bits of NwkID 0) the simulators use
        addr = int.from_bytes(os.urandom(4), "big") & 0x01FFFFFF
        self.state.fuota[d.id] = StoredFuota(d, now, now, addr, os.urandom(16))
        return api.CreateFuotaDeploymentResponse(id=d.id)

    @_rpc("FuotaService.GetDeployment")
    def GetDeployment(self, request: api.GetFuotaDeploymentRequest) -> api.GetFuotaDeploymentResponse:
        stored = self.state.deployment(request.id)
        resp = api.GetFuotaDeploymentResponse(deployment=stored.deployment, created_at=stored.created_at,
                                              updated_at=stored.updated_at)
        if stored.started_at is not None:
            resp.started_at.CopyFrom(stored.started_at)
        if stored.completed_at is not None:
            resp.completed_at.CopyFrom(stored.completed_at)
        return resp

    @_rpc("FuotaService.UpdateDeployment")
    def UpdateDeployment(self, request: api.UpdateFuotaDeploymentRequest) -> empty_pb2.Empty:
        if not request.HasField("deployment"):
            raise _invalid("deployment is missing")
        req = request.deployment
        dep_id = _uuid_rs(req.id)
        _uuid_rs(req.application_id)
        _uuid_rs(req.device_profile_id)
        stored = self.state.deployment(dep_id)
        self._not_started(stored)
        # update_deployment never changes the application or the device profile
        updated = api.FuotaDeployment()
        updated.CopyFrom(stored.deployment)
        self._settings(req, updated)
        stored.deployment = updated
        stored.updated_at = _now()
        return empty_pb2.Empty()

    @_rpc("FuotaService.DeleteDeployment")
    def DeleteDeployment(self, request: api.DeleteFuotaDeploymentRequest) -> empty_pb2.Empty:
        stored = self.state.deployment(request.id)
        del self.state.fuota[stored.deployment.id]
        return empty_pb2.Empty()

    def StartDeployment(self, request: api.StartFuotaDeploymentRequest,
                        context: grpc.ServicerContext) -> empty_pb2.Empty:
        """FuotaService.StartDeployment: sets started_at and queues the first job (CREATE_MC_GROUP)."""
        try:
            with self.state.lock:
                stored = self.state.deployment(request.id)
                self._not_started(stored)
                now = _now()
                stored.started_at = now
                stored.updated_at = now
                stored.jobs.append(api.FuotaDeploymentJob(job=_JOB_CREATE_MC_GROUP, created_at=now,
                                                          scheduler_run_after=now))
                listeners = list(self.state.fuota_listeners)
        except _Abort as exc:
            context.abort(exc.code, exc.message)
        for listener in listeners:  # outside the lock: the runner starts its own thread
            listener(stored.deployment.id)
        return empty_pb2.Empty()

    @_rpc("FuotaService.ListDeployments")
    def ListDeployments(self, request: api.ListFuotaDeploymentsRequest) -> api.ListFuotaDeploymentsResponse:
        tenant_id = _uuid_rs(request.tenant_id) if request.tenant_id else None
        app_id = _uuid_rs(request.application_id) if request.application_id else None
        rows = []
        for s in self.state.fuota.values():
            app = self.state.applications.get(s.deployment.application_id)
            if app is None or (tenant_id and app.tenant_id != tenant_id) or (app_id and app.id != app_id):
                continue
            rows.append((app.name, s.deployment.name, s, app))
        rows.sort(key=lambda r: (r[0], r[1]))
        items = []
        for _, _, s, app in _page(rows, request.limit, request.offset):
            item = api.FuotaDeploymentListItem(
                id=s.deployment.id, name=s.deployment.name, application_id=app.id, application_name=app.name,
                # ChirpStack fills updated_at from created_at here (api/fuota.rs, list_deployments)
                created_at=s.created_at, updated_at=s.created_at)
            if s.started_at is not None:
                item.started_at.CopyFrom(s.started_at)
            if s.completed_at is not None:
                item.completed_at.CopyFrom(s.completed_at)
            items.append(item)
        return api.ListFuotaDeploymentsResponse(total_count=len(rows), result=items)

    @_rpc("FuotaService.AddDevices")
    def AddDevices(self, request: api.AddDevicesToFuotaDeploymentRequest) -> empty_pb2.Empty:
        stored = self.state.deployment(request.fuota_deployment_id)
        self._not_started(stored)
        euis = [_eui64_rs(e) for e in request.dev_euis]
        d = stored.deployment
        members = {e for e in euis if e in self.state.devices
                   and self.state.devices[e].device.device_profile_id == d.device_profile_id
                   and self.state.devices[e].device.application_id == d.application_id}
        if len(members) != len(euis):
            raise _invalid("Validation error: All devices must have the same device-profile as the FUOTA deployment")
        errors = []
        for e in euis:
            self.state.check_fault("FuotaService.AddDevices", e)
            if e in stored.devices:
                errors.append(f"Object already exists (id: {e})")
                continue
            stored.devices[e] = api.FuotaDeploymentDeviceListItem(
                fuota_deployment_id=d.id, dev_eui=e, created_at=_now())
        if errors:
            raise _invalid(", ".join(errors))
        return empty_pb2.Empty()

    @_rpc("FuotaService.RemoveDevices")
    def RemoveDevices(self, request: api.RemoveDevicesFromFuotaDeploymentRequest) -> empty_pb2.Empty:
        # ChirpStack checks the deployment's id and access only: removing after the start is allowed
        dep_id = _uuid_rs(request.fuota_deployment_id)
        euis = [_eui64_rs(e) for e in request.dev_euis]
        stored = self.state.fuota.get(dep_id)
        for e in euis:
            if stored is not None:
                stored.devices.pop(e, None)
        return empty_pb2.Empty()

    @_rpc("FuotaService.ListDevices")
    def ListDevices(self, request: api.ListFuotaDeploymentDevicesRequest) -> api.ListFuotaDeploymentDevicesResponse:
        dep_id = _uuid_rs(request.fuota_deployment_id)
        stored = self.state.fuota.get(dep_id)
        devices = sorted(stored.devices.values(), key=lambda x: x.dev_eui) if stored else []
        return api.ListFuotaDeploymentDevicesResponse(total_count=len(devices),
                                                      result=_page(devices, request.limit, request.offset))

    @_rpc("FuotaService.AddGateways")
    def AddGateways(self, request: api.AddGatewaysToFuotaDeploymentRequest) -> empty_pb2.Empty:
        stored = self.state.deployment(request.fuota_deployment_id)
        self._not_started(stored)
        ids = [_eui64_rs(g) for g in request.gateway_ids]
        tenant_id = self.state.applications[stored.deployment.application_id].tenant_id
        if len({g for g in ids if self.state.gateways.get(g) == tenant_id}) != len(ids):
            raise _invalid("Validation error: All gateways must be under the same tenant as the FUOTA deployment")
        errors = []
        for g in ids:
            if g in stored.gateways:
                errors.append(f"Object already exists (id: {g})")
                continue
            stored.gateways[g] = api.FuotaDeploymentGatewayListItem(
                fuota_deployment_id=stored.deployment.id, gateway_id=g, created_at=_now())
        if errors:
            raise _invalid(", ".join(errors))
        return empty_pb2.Empty()

    @_rpc("FuotaService.RemoveGateways")
    def RemoveGateways(self, request: api.RemoveGatewaysFromFuotaDeploymentRequest) -> empty_pb2.Empty:
        dep_id = _uuid_rs(request.fuota_deployment_id)
        ids = [_eui64_rs(g) for g in request.gateway_ids]
        stored = self.state.fuota.get(dep_id)
        for g in ids:
            if stored is not None:
                stored.gateways.pop(g, None)
        return empty_pb2.Empty()

    @_rpc("FuotaService.ListGateways")
    def ListGateways(self, request: api.ListFuotaDeploymentGatewaysRequest) -> api.ListFuotaDeploymentGatewaysResponse:
        dep_id = _uuid_rs(request.fuota_deployment_id)
        stored = self.state.fuota.get(dep_id)
        gws = sorted(stored.gateways.values(), key=lambda x: x.gateway_id) if stored else []
        return api.ListFuotaDeploymentGatewaysResponse(total_count=len(gws),
                                                       result=_page(gws, request.limit, request.offset))

    @_rpc("FuotaService.ListJobs")
    def ListJobs(self, request: api.ListFuotaDeploymentJobsRequest) -> api.ListFuotaDeploymentJobsResponse:
        dep_id = _uuid_rs(request.fuota_deployment_id)
        stored = self.state.fuota.get(dep_id)
        return api.ListFuotaDeploymentJobsResponse(jobs=list(stored.jobs) if stored else [])


class _TokenCheck(grpc.ServerInterceptor):
    """Refuses every call whose ``authorization`` metadata is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}"

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        metadata = dict(handler_call_details.invocation_metadata or ())
        value = metadata.get("authorization")
        if value == self._expected:
            return continuation(handler_call_details)
        message = "authorization metadata missing" if value is None else "invalid API token"

        def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return grpc.unary_unary_rpc_method_handler(refuse)


class ChirpStackSimulator:
    """The simulator server: ``with ChirpStackSimulator(token="t") as sim: ... sim.address``.

    ``port=0`` picks a free port (tests); the CLI passes a fixed one. ``state`` is the in-memory
    database, shared with the servicers. The server listens on ``host`` only (127.0.0.1 by default).
    """

    def __init__(
        self, *, token: str, host: str = "127.0.0.1", port: int = 0, state: SimState | None = None
    ) -> None:
        if not token:
            raise ValueError("token: the simulator refuses to run without an API token")
        self.token = token
        self.host = host
        self.state = state or SimState()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8), interceptors=[_TokenCheck(token)]
        )
        api.add_TenantServiceServicer_to_server(_TenantService(self.state), self._server)
        api.add_ApplicationServiceServicer_to_server(_ApplicationService(self.state), self._server)
        api.add_DeviceProfileServiceServicer_to_server(_DeviceProfileService(self.state), self._server)
        api.add_DeviceServiceServicer_to_server(_DeviceService(self.state), self._server)
        api.add_FuotaServiceServicer_to_server(_FuotaService(self.state), self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")

    @property
    def address(self) -> str:
        """``host:port`` as a client passes it to ``--server``."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace).wait()

    def wait(self) -> None:
        """Block until the server stops (the CLI's foreground mode)."""
        self._server.wait_for_termination()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

