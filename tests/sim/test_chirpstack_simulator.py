"""The ChirpStack API simulator answers as ChirpStack v4 does, seen through the citynode client."""

from __future__ import annotations

import grpc
import pytest
from chirpstack_api import api

from gateway.errors import CitynodeError, ConfigError
from gateway.field.chirpstack_client import (
    ChirpStackAlreadyExists,
    ChirpStackAuthError,
    ChirpStackClient,
    ChirpStackError,
    ChirpStackNotFound,
    ChirpStackUnavailable,
    resolve_token,
)
from gateway.sim.chirpstack import DEFAULT_TENANT_ID, ChirpStackSimulator

DEV_EUI = "70b3d57ed0000001"
KEY = "2b7e151628aed2a6abf7158809cf4f3c"  # FIPS-197 appendix A example key


def _app_and_profile(cs: ChirpStackClient) -> tuple[str, str]:
    app_id = cs.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID, name="citynode"))
    dp_id = cs.create_device_profile(api.DeviceProfile(tenant_id=DEFAULT_TENANT_ID, name="p"))
    return app_id, dp_id


def _device(app_id: str, dp_id: str, dev_eui: str = DEV_EUI, name: str = "node-1") -> api.Device:
    return api.Device(dev_eui=dev_eui, name=name, application_id=app_id, device_profile_id=dp_id)


def test_default_tenant_exists_as_in_a_fresh_chirpstack(client: ChirpStackClient) -> None:
    assert client.get_tenant(DEFAULT_TENANT_ID).name == "ChirpStack"


def test_ids_are_uuid_strings(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    for ident in (app_id, dp_id):
        assert len(ident) == 36 and ident.count("-") == 4 and ident == ident.lower()


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        ((), "authorization metadata missing"),
        ((("authorization", "Bearer wrong"),), "invalid API token"),
        ((("authorization", "test-api-token"),), "invalid API token"),  # the "Bearer " scheme is required
    ],
)
def test_calls_without_the_bearer_token_are_unauthenticated(
    sim: ChirpStackSimulator, metadata: tuple[tuple[str, str], ...], detail: str
) -> None:
    with grpc.insecure_channel(sim.address) as channel, pytest.raises(grpc.RpcError) as info:
        api.TenantServiceStub(channel).Get(api.GetTenantRequest(id=DEFAULT_TENANT_ID), metadata=metadata)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == detail


def test_wrong_token_becomes_a_clear_citynode_error(sim: ChirpStackSimulator) -> None:
    with (
        ChirpStackClient(sim.address, "not-the-token") as cs,
        pytest.raises(ChirpStackAuthError, match="refused the API token") as info,
    ):
        cs.get_tenant(DEFAULT_TENANT_ID)
    assert isinstance(info.value, CitynodeError)
    assert "not-the-token" not in str(info.value)  # tokens never end up in messages


def test_unreachable_server_is_unavailable() -> None:
    with (
        ChirpStackClient("127.0.0.1:1", "t", timeout=2.0) as cs,
        pytest.raises(ChirpStackUnavailable, match="not reachable"),
    ):
        cs.get_tenant(DEFAULT_TENANT_ID)


def test_duplicate_dev_eui_is_already_exists(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    client.create_device(_device(app_id, dp_id))
    with pytest.raises(ChirpStackAlreadyExists, match=f"Object already exists \\(id: {DEV_EUI}\\)"):
        client.create_device(_device(app_id, dp_id, name="other"))


@pytest.mark.parametrize(
    ("dev_eui", "why"),
    [
        ("70b3d57ed000001", "15 hex digits"),
        ("70b3d57ed00000011", "17 hex digits"),
        ("70b3d57ed000000g", "not hex"),
        ("70-b3-d5-7e-d0-00", "separators"),
        ("", "empty"),
    ],
)
def test_malformed_dev_eui_is_invalid_argument(client: ChirpStackClient, dev_eui: str, why: str) -> None:
    app_id, dp_id = _app_and_profile(client)
    with pytest.raises(ChirpStackError, match="INVALID_ARGUMENT: device.dev_eui") as info:
        client.create_device(_device(app_id, dp_id, dev_eui=dev_eui))
    assert info.value.code == "INVALID_ARGUMENT", why


def test_missing_name_is_invalid_argument(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    with pytest.raises(ChirpStackError, match="device.name"):
        client.create_device(_device(app_id, dp_id, name=""))
    with pytest.raises(ChirpStackError, match="application.name"):
        client.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID))


def test_unknown_objects_are_not_found(client: ChirpStackClient) -> None:
    unknown = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(ChirpStackNotFound, match=f"Object does not exist \\(id: {unknown}\\)"):
        client.get_application(unknown)
    with pytest.raises(ChirpStackNotFound):
        client.create_application(api.Application(tenant_id=unknown, name="x"))
    assert client.get_device(DEV_EUI) is None
    with pytest.raises(ChirpStackNotFound):
        client.update_device(_device(unknown, unknown))


def test_dev_eui_is_stored_lower_case(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    client.create_device(_device(app_id, dp_id, dev_eui=DEV_EUI.upper()))
    device = client.get_device(DEV_EUI)
    assert device is not None and device.dev_eui == DEV_EUI


def test_keys_create_get_update_and_conflicts(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    client.create_device(_device(app_id, dp_id))
    assert client.get_keys(DEV_EUI) is None
    zero = "0" * 32
    client.create_keys(api.DeviceKeys(dev_eui=DEV_EUI, nwk_key=KEY, app_key=zero))
    keys = client.get_keys(DEV_EUI)
    assert keys is not None and keys.nwk_key == KEY
    with pytest.raises(ChirpStackAlreadyExists):
        client.create_keys(api.DeviceKeys(dev_eui=DEV_EUI, nwk_key=KEY, app_key=zero))
    client.update_keys(api.DeviceKeys(dev_eui=DEV_EUI, nwk_key=KEY[::-1], app_key=zero))
    assert client.get_keys(DEV_EUI).nwk_key == KEY[::-1]  # type: ignore[union-attr]


@pytest.mark.parametrize("nwk_key", ["00" * 15, "00" * 17, "zz" * 16, ""])
def test_keys_of_wrong_length_are_invalid_argument(client: ChirpStackClient, nwk_key: str) -> None:
    app_id, dp_id = _app_and_profile(client)
    client.create_device(_device(app_id, dp_id))
    with pytest.raises(ChirpStackError, match="device_keys.nwk_key") as info:
        client.create_keys(api.DeviceKeys(dev_eui=DEV_EUI, nwk_key=nwk_key, app_key="0" * 32))
    assert info.value.code == "INVALID_ARGUMENT"


def test_device_profile_and_application_of_different_tenants_are_refused(
    sim: ChirpStackSimulator, client: ChirpStackClient
) -> None:
    other = client.call(
        client.tenants.Create, api.CreateTenantRequest(tenant=api.Tenant(name="other")), "create tenant"
    ).id
    app_id = client.create_application(api.Application(tenant_id=DEFAULT_TENANT_ID, name="a"))
    dp_id = client.create_device_profile(api.DeviceProfile(tenant_id=other, name="p"))
    with pytest.raises(ChirpStackError, match="same tenant"):
        client.create_device(_device(app_id, dp_id))


def test_enqueue_get_and_flush_queue(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    client.create_device(_device(app_id, dp_id))
    first = client.enqueue(DEV_EUI, 2, b"\xa1\x00\x19\x03\x84")
    second = client.enqueue(DEV_EUI.upper(), 2, b"\x01", confirmed=True)
    queue = client.get_queue(DEV_EUI)
    assert [q.id for q in queue] == [first, second]
    assert [(q.f_port, q.data, q.confirmed, q.f_cnt_down) for q in queue] == [
        (2, b"\xa1\x00\x19\x03\x84", False, 0),
        (2, b"\x01", True, 1),
    ]
    client.flush_queue(DEV_EUI)
    assert client.get_queue(DEV_EUI) == []


def test_enqueue_for_unknown_device_is_not_found(client: ChirpStackClient) -> None:
    with pytest.raises(ChirpStackNotFound):
        client.enqueue(DEV_EUI, 2, b"\x01")


@pytest.mark.parametrize("fport", [0, 224, 255])
def test_enqueue_checks_the_fport_range(client: ChirpStackClient, fport: int) -> None:
    with pytest.raises(ConfigError, match="fport"):
        client.enqueue(DEV_EUI, fport, b"\x01")


def test_simulator_itself_refuses_reserved_fports(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    client.create_device(_device(app_id, dp_id))
    item = api.DeviceQueueItem(dev_eui=DEV_EUI, f_port=224, data=b"\x01")
    with pytest.raises(ChirpStackError, match="f_port"):
        client.call(client.devices.Enqueue, api.EnqueueDeviceQueueItemRequest(queue_item=item), "enqueue")


def test_list_pages_with_limit_and_offset(client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    for i in range(250):
        client.create_device(_device(app_id, dp_id, dev_eui=f"70b3d57ed0{i:06x}", name=f"n{i:03d}"))
    names = [d.name for d in client.list_devices(app_id)]  # the client pages by 100
    assert names == [f"n{i:03d}" for i in range(250)]
    page = client.call(client.devices.List, api.ListDevicesRequest(application_id=app_id), "list")
    assert (page.total_count, len(page.result)) == (250, 0)  # limit 0 returns no items, as ChirpStack


def test_injected_fault_fails_once(sim: ChirpStackSimulator, client: ChirpStackClient) -> None:
    app_id, dp_id = _app_and_profile(client)
    sim.state.inject_fault("DeviceService.Create", DEV_EUI, code=grpc.StatusCode.INTERNAL, message="db down")
    with pytest.raises(ChirpStackError, match="INTERNAL: db down"):
        client.create_device(_device(app_id, dp_id))
    client.create_device(_device(app_id, dp_id))
    assert client.get_device(DEV_EUI) is not None


@pytest.mark.parametrize(
    ("kwargs", "env", "expected"),
    [
        ({"token": "direct"}, {"CITYNODE_CHIRPSTACK_TOKEN": "env"}, "direct"),
        ({}, {"CITYNODE_CHIRPSTACK_TOKEN": " env\n"}, "env"),
        ({"token_file": "FILE"}, {"CITYNODE_CHIRPSTACK_TOKEN": "env"}, "from-file"),
        ({}, {"CITYNODE_CHIRPSTACK_TOKEN_FILE": "FILE"}, "from-file"),
    ],
)
def test_token_sources(tmp_path, kwargs: dict, env: dict, expected: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    token_file.chmod(0o600)
    kwargs = {k: (str(token_file) if v == "FILE" else v) for k, v in kwargs.items()}
    env = {k: (str(token_file) if v == "FILE" else v) for k, v in env.items()}
    assert resolve_token(env=env, **kwargs) == expected


def test_missing_token_names_the_sources(tmp_path) -> None:
    with pytest.raises(ConfigError, match="CITYNODE_CHIRPSTACK_TOKEN"):
        resolve_token(env={})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_token(token_file=tmp_path / "absent", env={})
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "empty").chmod(0o600)
    with pytest.raises(ConfigError, match="is empty"):
        resolve_token(token_file=tmp_path / "empty", env={})


def test_simulator_refuses_to_run_without_token() -> None:
    with pytest.raises(ValueError, match="token"):
        ChirpStackSimulator(token="")
