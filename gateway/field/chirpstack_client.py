"""A small, typed client for the parts of ChirpStack v4's gRPC API that citynode uses.

It owns one gRPC channel, adds ``authorization: Bearer <token>`` metadata to every call, and turns
``grpc.RpcError`` into :class:`ChirpStackError` subclasses (all :class:`~gateway.errors.CitynodeError`),
so that the CLI prints one line such as ``ChirpStack refused the API token (UNAUTHENTICATED: ...)``.

Used by ``citynode provision``, ``citynode gateway downlink`` (:meth:`ChirpStackClient.enqueue`) and
``citynode fuota deploy/status`` (the ``*_fuota_*`` methods, ``FuotaService``).

The token comes from, in this order: the ``token`` argument, the file named by ``token_file``, the
``CITYNODE_CHIRPSTACK_TOKEN`` environment variable, the file named by ``CITYNODE_CHIRPSTACK_TOKEN_FILE``.
Tokens are never logged or put into error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

import grpc
from chirpstack_api import api

from gateway.errors import CitynodeError, ConfigError

__all__ = [
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "ChirpStackAlreadyExists",
    "ChirpStackAuthError",
    "ChirpStackClient",
    "ChirpStackError",
    "ChirpStackNotFound",
    "ChirpStackUnavailable",
    "resolve_token",
]

TOKEN_ENV = "CITYNODE_CHIRPSTACK_TOKEN"
TOKEN_FILE_ENV = "CITYNODE_CHIRPSTACK_TOKEN_FILE"

_PAGE = 100  # List page size; ChirpStack returns nothing for limit=0, so we always ask for a page
_R = TypeVar("_R")


class ChirpStackError(CitynodeError):
    """ChirpStack's API refused or failed a call. ``code`` is the gRPC status code name."""

    def __init__(self, message: str, *, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class ChirpStackNotFound(ChirpStackError):
    """The object (tenant, application, profile, device, keys) does not exist (NOT_FOUND)."""


class ChirpStackAlreadyExists(ChirpStackError):
    """The object exists already, e.g. a second device with the same DevEUI (ALREADY_EXISTS)."""


class ChirpStackAuthError(ChirpStackError):
    """The API token is missing, wrong or lacks the permission (UNAUTHENTICATED / PERMISSION_DENIED)."""


class ChirpStackUnavailable(ChirpStackError):
    """The server could not be reached or timed out (UNAVAILABLE / DEADLINE_EXCEEDED)."""


def resolve_token(
    token: str | None = None, token_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Find the API token (see the module docstring for the order); raise ConfigError naming the sources."""
    env = os.environ if env is None else env
    if token:
        return token.strip()
    if token_file:
        return _read_token_file(token_file)
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    if env.get(TOKEN_FILE_ENV):
        return _read_token_file(env[TOKEN_FILE_ENV])
    raise ConfigError(
        f"ChirpStack API token: none given; set {TOKEN_ENV}, or {TOKEN_FILE_ENV} / --token-file to a file "
        "holding the token (create one in ChirpStack's UI under API keys)"
    )


def _read_token_file(path: str | os.PathLike[str]) -> str:
    try:
        mode = Path(path).stat().st_mode & 0o777
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"token file {path}: cannot read it ({exc.strerror})") from None
    if mode & 0o077:  # as bundles: a secret only its owner may read
        raise ConfigError(
            f"token file {path}: readable by group or others (mode {mode:04o}); fix it with: chmod 600 {path}"
        )
    if not text:
        raise ConfigError(f"token file {path}: is empty")
    return text


def _translate(exc: grpc.RpcError, what: str, server: str) -> ChirpStackError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code is not None else "UNKNOWN"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return ChirpStackAuthError(
            f"ChirpStack at {server} refused the API token for {what} ({name}: {details}); "
            f"check {TOKEN_ENV} or the token file",
            code=name,
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ChirpStackUnavailable(
            f"ChirpStack at {server} is not reachable for {what} ({name}: {details})", code=name
        )
    cls = {
        grpc.StatusCode.NOT_FOUND: ChirpStackNotFound,
        grpc.StatusCode.ALREADY_EXISTS: ChirpStackAlreadyExists,
    }.get(code, ChirpStackError)
    return cls(f"ChirpStack {what}: {name}: {details}", code=name)


class ChirpStackClient:
    """One connection to ChirpStack's gRPC API: ``with ChirpStackClient("host:8080", token) as cs:``.

    ``server`` is ``host:port`` of the API (ChirpStack serves gRPC on its HTTP port, 8080 by default).
    ``tls=True`` uses the system's root certificates (a ChirpStack behind a TLS reverse proxy).
    ``timeout`` (seconds) bounds every call; a timeout raises :class:`ChirpStackUnavailable`.
    """

    def __init__(self, server: str, token: str, *, tls: bool = False, timeout: float = 10.0) -> None:
        if not server or ":" not in server:
            raise ConfigError(f"--server: expected host:port of ChirpStack's API, got {server!r}")
        if not token:
            raise ConfigError("ChirpStack API token: empty")
        self.server = server
        self.timeout = timeout
        if tls:
            self._channel = grpc.secure_channel(server, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(server)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.tenants = api.TenantServiceStub(self._channel)
        self.applications = api.ApplicationServiceStub(self._channel)
        self.device_profiles = api.DeviceProfileServiceStub(self._channel)
        self.devices = api.DeviceServiceStub(self._channel)
        self.fuota = api.FuotaServiceStub(self._channel)

    @classmethod
    def from_env(
        cls, server: str, *, token_file: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> ChirpStackClient:
        """A client whose token comes from :func:`resolve_token` (env var or file)."""
        return cls(server, resolve_token(token_file=token_file), **kwargs)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Callable[..., _R], request: Any, what: str) -> _R:
        """Run one unary call with the token and timeout; ``what`` names it in error messages."""
        try:
            return method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _translate(exc, what, self.server) from None

    # -- tenants and applications ------------------------------------------------------------------
    def get_tenant(self, tenant_id: str) -> api.Tenant:
        return self.call(self.tenants.Get, api.GetTenantRequest(id=tenant_id), f"tenant {tenant_id}").tenant

    def list_applications(self, tenant_id: str) -> Iterator[api.ApplicationListItem]:
        yield from self._pages(
            lambda off: self.call(
                self.applications.List,
                api.ListApplicationsRequest(tenant_id=tenant_id, limit=_PAGE, offset=off),
                f"list applications of tenant {tenant_id}",
            )
        )

    def get_application(self, application_id: str) -> api.Application:
        return self.call(
            self.applications.Get, api.GetApplicationRequest(id=application_id), f"application {application_id}"
        ).application

    def create_application(self, application: api.Application) -> str:
        return self.call(
            self.applications.Create,
            api.CreateApplicationRequest(application=application),
            f"create application {application.name!r}",
        ).id

    def update_application(self, application: api.Application) -> None:
        self.call(
            self.applications.Update,
            api.UpdateApplicationRequest(application=application),
            f"update application {application.name!r}",
        )

    # -- device profiles ---------------------------------------------------------------------------
    def list_device_profiles(self, tenant_id: str) -> Iterator[api.DeviceProfileListItem]:
        yield from self._pages(
            lambda off: self.call(
                self.device_profiles.List,
                api.ListDeviceProfilesRequest(tenant_id=tenant_id, limit=_PAGE, offset=off),
                f"list device profiles of tenant {tenant_id}",
            )
        )

    def get_device_profile(self, profile_id: str) -> api.DeviceProfile:
        return self.call(
            self.device_profiles.Get, api.GetDeviceProfileRequest(id=profile_id), f"device profile {profile_id}"
        ).device_profile

    def create_device_profile(self, profile: api.DeviceProfile) -> str:
        return self.call(
            self.device_profiles.Create,
            api.CreateDeviceProfileRequest(device_profile=profile),
            f"create device profile {profile.name!r}",
        ).id

    def update_device_profile(self, profile: api.DeviceProfile) -> None:
        self.call(
            self.device_profiles.Update,
            api.UpdateDeviceProfileRequest(device_profile=profile),
            f"update device profile {profile.name!r}",
        )

    # -- devices and keys --------------------------------------------------------------------------
    def list_devices(self, application_id: str) -> Iterator[api.DeviceListItem]:
        yield from self._pages(
            lambda off: self.call(
                self.devices.List,
                api.ListDevicesRequest(application_id=application_id, limit=_PAGE, offset=off),
                f"list devices of application {application_id}",
            )
        )

    def get_device(self, dev_eui: str) -> api.Device | None:
        """The device, or None when ChirpStack does not know the DevEUI."""
        try:
            return self.call(self.devices.Get, api.GetDeviceRequest(dev_eui=dev_eui), f"device {dev_eui}").device
        except ChirpStackNotFound:
            return None

    def create_device(self, device: api.Device) -> None:
        self.call(self.devices.Create, api.CreateDeviceRequest(device=device), f"create device {device.dev_eui}")

    def update_device(self, device: api.Device) -> None:
        self.call(self.devices.Update, api.UpdateDeviceRequest(device=device), f"update device {device.dev_eui}")

    def get_keys(self, dev_eui: str) -> api.DeviceKeys | None:
        """The device's OTAA keys, or None when it has none."""
        try:
            return self.call(
                self.devices.GetKeys, api.GetDeviceKeysRequest(dev_eui=dev_eui), f"keys of device {dev_eui}"
            ).device_keys
        except ChirpStackNotFound:
            return None

    def create_keys(self, keys: api.DeviceKeys) -> None:
        self.call(
            self.devices.CreateKeys,
            api.CreateDeviceKeysRequest(device_keys=keys),
            f"create keys of device {keys.dev_eui}",
        )

    def update_keys(self, keys: api.DeviceKeys) -> None:
        self.call(
            self.devices.UpdateKeys,
            api.UpdateDeviceKeysRequest(device_keys=keys),
            f"update keys of device {keys.dev_eui}",
        )

    # -- downlink queue ----------------------------------------------------------------------------
    def enqueue(self, dev_eui: str, fport: int, data: bytes, confirmed: bool = False) -> str:
        """Queue one downlink of already-encoded ``data`` on ``fport``; returns ChirpStack's queue item id.

        The payload goes out at the device's next receive window (class A: after its next uplink).
        FPort must be 1..223 (LoRaWAN 1.0.4 section 4.3.2); checked here so the error names the input.
        """
        if not 1 <= fport <= 223:
            raise ConfigError(f"fport: must be 1..223 for application downlinks, got {fport}")
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise ConfigError("data: a downlink needs a non-empty bytes payload")
        item = api.DeviceQueueItem(dev_eui=dev_eui, f_port=fport, data=bytes(data), confirmed=confirmed)
        return self.call(
            self.devices.Enqueue,
            api.EnqueueDeviceQueueItemRequest(queue_item=item),
            f"enqueue downlink for device {dev_eui}",
        ).id

    def get_queue(self, dev_eui: str) -> list[api.DeviceQueueItem]:
        return list(
            self.call(
                self.devices.GetQueue, api.GetDeviceQueueItemsRequest(dev_eui=dev_eui), f"queue of device {dev_eui}"
            ).result
        )

    def flush_queue(self, dev_eui: str) -> None:
        self.call(
            self.devices.FlushQueue, api.FlushDeviceQueueRequest(dev_eui=dev_eui), f"flush queue of device {dev_eui}"
        )

    # -- FUOTA deployments (FuotaService) --------------------------------------------------------
    def create_fuota_deployment(self, deployment: api.FuotaDeployment) -> str:
        return self.call(
            self.fuota.CreateDeployment,
            api.CreateFuotaDeploymentRequest(deployment=deployment),
            f"create FUOTA deployment {deployment.name!r}",
        ).id

    def get_fuota_deployment(self, deployment_id: str) -> api.GetFuotaDeploymentResponse:
        return self.call(
            self.fuota.GetDeployment, api.GetFuotaDeploymentRequest(id=deployment_id),
            f"FUOTA deployment {deployment_id}",
        )

    def add_fuota_devices(self, deployment_id: str, dev_euis: list[str]) -> None:
        self.call(
            self.fuota.AddDevices,
            api.AddDevicesToFuotaDeploymentRequest(fuota_deployment_id=deployment_id, dev_euis=dev_euis),
            f"add {len(dev_euis)} devices to FUOTA deployment {deployment_id}",
        )

    def start_fuota_deployment(self, deployment_id: str) -> None:
        self.call(
            self.fuota.StartDeployment, api.StartFuotaDeploymentRequest(id=deployment_id),
            f"start FUOTA deployment {deployment_id}",
        )

    def list_fuota_devices(self, deployment_id: str) -> Iterator[api.FuotaDeploymentDeviceListItem]:
        yield from self._pages(
            lambda off: self.call(
                self.fuota.ListDevices,
                api.ListFuotaDeploymentDevicesRequest(fuota_deployment_id=deployment_id, limit=_PAGE, offset=off),
                f"list devices of FUOTA deployment {deployment_id}",
            )
        )

    def list_fuota_jobs(self, deployment_id: str) -> list[api.FuotaDeploymentJob]:
        return list(
            self.call(
                self.fuota.ListJobs, api.ListFuotaDeploymentJobsRequest(fuota_deployment_id=deployment_id),
                f"jobs of FUOTA deployment {deployment_id}",
            ).jobs
        )

    @staticmethod
    def _pages(fetch: Callable[[int], Any]) -> Iterator[Any]:
        offset = 0
        while True:
            page = fetch(offset)
            yield from page.result
            offset += len(page.result)
            if not page.result or offset >= page.total_count:
                return
