"""The ChirpStack API simulator's FuotaService answers as ChirpStack v4's ``api/fuota.rs`` does.

Every call goes through a real gRPC channel with the protobuf types of ``chirpstack-api``; the status
codes and messages are those of ChirpStack's source (``api/fuota.rs``, ``storage/fuota.rs``,
``api/error.rs``).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from chirpstack_api import api, common

from gateway.field.chirpstack_client import ChirpStackClient
from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

TOKEN = "test-api-token"
DEV_A, DEV_B, DEV_OTHER = "70b3d57ed0000001", "70b3d57ed0000002", "70b3d57ed0000009"
GATEWAY = "0016c001ff10a235"


@pytest.fixture
def stub(sim: ChirpStackSimulator) -> Iterator[api.FuotaServiceStub]:
    with grpc.insecure_channel(sim.address) as channel:
        yield api.FuotaServiceStub(channel)


class Call:
    """One FuotaService call with the token; ``fails(code, detail)`` for the refusals."""

    def __init__(self, stub: api.FuotaServiceStub) -> None:
        self.stub = stub

    def __call__(self, method: str, request: object) -> object:
        return getattr(self.stub, method)(request, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=5)

    def fails(self, method: str, request: object) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as info:
            self(method, request)
        return info.value.code(), info.value.details()


@pytest.fixture
def call(stub: api.FuotaServiceStub) -> Call:
    return Call(stub)


@pytest.fixture
def fleet(client: ChirpStackClient) -> dict[str, str]:
    """An application, two device profiles, devices A and B on profile 1, device OTHER on profile 2."""
    app = client.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID, name="citynode"))
    p1 = client.create_device_profile(api.DeviceProfile(tenant_id=DEFAULT_TENANT_ID, name="air", region=common.EU868))
    p2 = client.create_device_profile(api.DeviceProfile(tenant_id=DEFAULT_TENANT_ID, name="bins", region=common.EU868))
    for eui, prof in ((DEV_A, p1), (DEV_B, p1), (DEV_OTHER, p2)):
        client.create_device(api.Device(dev_eui=eui, name=eui, application_id=app, device_profile_id=prof))
    return {"app": app, "profile": p1, "other_profile": p2}


def _deployment(fleet: dict[str, str], **kw: object) -> api.FuotaDeployment:
    fields = dict(application_id=fleet["app"], device_profile_id=fleet["profile"], name="v0.2.0",
                  multicast_group_type=api.CLASS_C, multicast_dr=5, multicast_frequency=869525000,
                  fragmentation_fragment_size=50, fragmentation_redundancy_percentage=20,
                  unicast_max_retry_count=1, payload=bytes(range(200)),
                  request_fragmentation_session_status=api.AFTER_SESSION_TIMEOUT)
    fields.update(kw)
    return api.FuotaDeployment(**fields)  # type: ignore[arg-type]


def _create(call: Call, fleet: dict[str, str], **kw: object) -> str:
    resp = call("CreateDeployment", api.CreateFuotaDeploymentRequest(deployment=_deployment(fleet, **kw)))
    return resp.id  # type: ignore[attr-defined]


def test_a_deployment_reads_back_as_created_with_timestamps(call: Call, fleet: dict[str, str]) -> None:
    dep_id = _create(call, fleet, on_complete_set_device_tags={"app_version": "0.2.0"})
    got = call("GetDeployment", api.GetFuotaDeploymentRequest(id=dep_id))
    d = got.deployment  # type: ignore[attr-defined]
    assert (d.id, d.name, d.application_id, d.multicast_dr) == (dep_id, "v0.2.0", fleet["app"], 5)
    assert d.payload == bytes(range(200)) and dict(d.on_complete_set_device_tags) == {"app_version": "0.2.0"}
    assert got.HasField("created_at") and not got.HasField("started_at")  # type: ignore[attr-defined]


def test_calculated_fragment_size_and_timeout_follow_chirpstack(call: Call, fleet: dict[str, str]) -> None:
    # EU868 DR5: largest downlink FRMPayload 242 bytes (RP002 2.4.6, no repeater) - 3 bytes of DataFragment
    # header.
    # Timeout: 1000 bytes in 239-byte fragments = 5 + ceil(5 * 20 %) = 1 coded, 5 s apart, +1:
    # 35 s -> 2^6 = 64 s.
    dep_id = _create(call, fleet, payload=bytes(1000), fragmentation_fragment_size=0,
                     calculate_fragmentation_fragment_size=True, calculate_multicast_timeout=True)
    d = call("GetDeployment", api.GetFuotaDeploymentRequest(id=dep_id)).deployment  # type: ignore[attr-defined]
    assert (d.fragmentation_fragment_size, d.multicast_timeout) == (239, 6)
    assert not d.calculate_fragmentation_fragment_size and not d.calculate_multicast_timeout
    # a payload shorter than the room is one fragment of its own length
    small = _create(call, fleet, payload=bytes(40), calculate_fragmentation_fragment_size=True)
    d = call("GetDeployment", api.GetFuotaDeploymentRequest(id=small)).deployment  # type: ignore[attr-defined]
    assert d.fragmentation_fragment_size == 40


@pytest.mark.parametrize(
    ("request_", "code", "detail"),
    [
        (api.CreateFuotaDeploymentRequest(), grpc.StatusCode.INVALID_ARGUMENT, "deployment is missing"),
        (api.CreateFuotaDeploymentRequest(deployment=api.FuotaDeployment(application_id="nope")),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid length: expected length 32 for simple format, found 4"),
        (api.CreateFuotaDeploymentRequest(deployment=api.FuotaDeployment(
            application_id="00000000-0000-0000-0000-000000000001",
            device_profile_id="00000000-0000-0000-0000-000000000002")),
         grpc.StatusCode.NOT_FOUND, "Object does not exist (id: 00000000-0000-0000-0000-000000000001)"),
    ],
)
def test_create_refusals(call: Call, request_: api.CreateFuotaDeploymentRequest, code: grpc.StatusCode,
                         detail: str) -> None:
    assert call.fails("CreateDeployment", request_) == (code, detail)


def test_unknown_deployment_is_not_found_but_its_lists_are_empty(call: Call) -> None:
    ghost = "00000000-0000-0000-0000-00000000beef"
    assert call.fails("GetDeployment", api.GetFuotaDeploymentRequest(id=ghost)) == (
        grpc.StatusCode.NOT_FOUND, f"Object does not exist (id: {ghost})")
    assert call.fails("DeleteDeployment", api.DeleteFuotaDeploymentRequest(id=ghost))[0] is grpc.StatusCode.NOT_FOUND
    # ChirpStack counts rows for the id without looking the deployment up
    devs = call("ListDevices", api.ListFuotaDeploymentDevicesRequest(fuota_deployment_id=ghost, limit=10))
    assert devs.total_count == 0  # type: ignore[attr-defined]
    assert list(call("ListJobs", api.ListFuotaDeploymentJobsRequest(fuota_deployment_id=ghost)).jobs) == []  # type: ignore[attr-defined]


def test_devices_must_share_the_deployments_profile_and_application(call: Call, fleet: dict[str, str]) -> None:
    dep_id = _create(call, fleet)
    add = api.AddDevicesToFuotaDeploymentRequest
    assert call.fails("AddDevices", add(fuota_deployment_id=dep_id, dev_euis=[DEV_A, DEV_OTHER])) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Validation error: All devices must have the same device-profile as the FUOTA deployment")
    call("AddDevices", add(fuota_deployment_id=dep_id, dev_euis=[DEV_A, DEV_B.upper()]))
    assert call.fails("AddDevices", add(fuota_deployment_id=dep_id, dev_euis=[DEV_A])) == (
        grpc.StatusCode.INVALID_ARGUMENT, f"Object already exists (id: {DEV_A})")
    got = call("ListDevices", api.ListFuotaDeploymentDevicesRequest(fuota_deployment_id=dep_id, limit=10))
    assert [d.dev_eui for d in got.result] == [DEV_A, DEV_B]  # type: ignore[attr-defined]
    assert all(not d.HasField("completed_at") and d.error_msg == "" for d in got.result)  # type: ignore[attr-defined]
    call("RemoveDevices", api.RemoveDevicesFromFuotaDeploymentRequest(fuota_deployment_id=dep_id, dev_euis=[DEV_A]))
    got = call("ListDevices", api.ListFuotaDeploymentDevicesRequest(fuota_deployment_id=dep_id, limit=10))
    assert [d.dev_eui for d in got.result] == [DEV_B]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("eui", "detail"),
    [("70b3d57ed000000", "Odd number of digits"), ("70b3d57ed00000zz", "Invalid character 'z' at position 14"),
     ("70b3d57ed00000", "Invalid string length")],
)
def test_a_malformed_dev_eui_is_internal_as_in_chirpstack(call: Call, fleet: dict[str, str], eui: str,
                                                         detail: str) -> None:
    dep_id = _create(call, fleet)
    req = api.AddDevicesToFuotaDeploymentRequest(fuota_deployment_id=dep_id, dev_euis=[eui])
    assert call.fails("AddDevices", req) == (grpc.StatusCode.INTERNAL, detail)


def test_gateways_must_be_in_the_applications_tenant(sim: ChirpStackSimulator, call: Call,
                                                      fleet: dict[str, str]) -> None:
    dep_id = _create(call, fleet)
    add = api.AddGatewaysToFuotaDeploymentRequest
    assert call.fails("AddGateways", add(fuota_deployment_id=dep_id, gateway_ids=[GATEWAY])) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Validation error: All gateways must be under the same tenant as the FUOTA deployment")
    sim.state.add_gateway(GATEWAY)
    call("AddGateways", add(fuota_deployment_id=dep_id, gateway_ids=[GATEWAY]))
    got = call("ListGateways", api.ListFuotaDeploymentGatewaysRequest(fuota_deployment_id=dep_id, limit=10))
    assert [g.gateway_id for g in got.result] == [GATEWAY]  # type: ignore[attr-defined]
    call("RemoveGateways", api.RemoveGatewaysFromFuotaDeploymentRequest(fuota_deployment_id=dep_id,
                                                                        gateway_ids=[GATEWAY]))
    got = call("ListGateways", api.ListFuotaDeploymentGatewaysRequest(fuota_deployment_id=dep_id, limit=10))
    assert got.total_count == 0  # type: ignore[attr-defined]


def test_start_queues_the_first_job_and_freezes_the_deployment(sim: ChirpStackSimulator, call: Call,
                                                               fleet: dict[str, str]) -> None:
    started: list[str] = []
    sim.state.fuota_listeners.append(started.append)
    dep_id = _create(call, fleet)
    call("AddDevices", api.AddDevicesToFuotaDeploymentRequest(fuota_deployment_id=dep_id, dev_euis=[DEV_A]))
    call("StartDeployment", api.StartFuotaDeploymentRequest(id=dep_id))
    assert started == [dep_id]
    jobs = call("ListJobs", api.ListFuotaDeploymentJobsRequest(fuota_deployment_id=dep_id)).jobs  # type: ignore[attr-defined]
    assert [j.job for j in jobs] == ["CREATE_MC_GROUP"]
    assert call("GetDeployment", api.GetFuotaDeploymentRequest(id=dep_id)).HasField("started_at")  # type: ignore[attr-defined]
    already = (grpc.StatusCode.FAILED_PRECONDITION, "FUOTA deployment has already started")
    assert call.fails("StartDeployment", api.StartFuotaDeploymentRequest(id=dep_id)) == already
    assert call.fails("AddDevices", api.AddDevicesToFuotaDeploymentRequest(
        fuota_deployment_id=dep_id, dev_euis=[DEV_B])) == already
    assert call.fails("UpdateDeployment", api.UpdateFuotaDeploymentRequest(
        deployment=_deployment(fleet, id=dep_id, name="renamed"))) == already


def test_update_changes_settings_but_never_the_application_or_profile(call: Call, fleet: dict[str, str]) -> None:
    dep_id = _create(call, fleet)
    call("UpdateDeployment", api.UpdateFuotaDeploymentRequest(deployment=_deployment(
        fleet, id=dep_id, name="renamed", device_profile_id=fleet["other_profile"], multicast_dr=3)))
    d = call("GetDeployment", api.GetFuotaDeploymentRequest(id=dep_id)).deployment  # type: ignore[attr-defined]
    assert (d.name, d.multicast_dr, d.device_profile_id) == ("renamed", 3, fleet["profile"])


def test_list_filters_by_application_and_orders_by_name(call: Call, fleet: dict[str, str]) -> None:
    for name in ("b", "a", "c"):
        _create(call, fleet, name=name)
    got = call("ListDeployments", api.ListFuotaDeploymentsRequest(application_id=fleet["app"], limit=2))
    assert got.total_count == 3  # type: ignore[attr-defined]
    assert [d.name for d in got.result] == ["a", "b"]  # type: ignore[attr-defined]
    assert {d.application_name for d in got.result} == {"citynode"}  # type: ignore[attr-defined]
    other = call("ListDeployments", api.ListFuotaDeploymentsRequest(
        application_id="00000000-0000-0000-0000-000000000001", limit=10))
    assert other.total_count == 0  # type: ignore[attr-defined]


def test_delete_removes_the_deployment(call: Call, fleet: dict[str, str]) -> None:
    dep_id = _create(call, fleet)
    call("DeleteDeployment", api.DeleteFuotaDeploymentRequest(id=dep_id))
    assert call.fails("GetDeployment", api.GetFuotaDeploymentRequest(id=dep_id))[0] is grpc.StatusCode.NOT_FOUND


def test_the_same_tenant_rule_for_application_and_profile(client: ChirpStackClient, call: Call,
                                                          fleet: dict[str, str]) -> None:
    other = client.call(client.tenants.Create, api.CreateTenantRequest(tenant=api.Tenant(name="other")), "t").id
    foreign = client.create_device_profile(api.DeviceProfile(tenant_id=other, name="foreign"))
    req = api.CreateFuotaDeploymentRequest(deployment=_deployment(fleet, device_profile_id=foreign))
    assert call.fails("CreateDeployment", req) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Validation error: The application and device-profile must be under the same tenant")
