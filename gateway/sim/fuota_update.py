"""An update over the air of a virtual fleet: the app trees, the API simulator's devices and the run.

What an operator does in the city, on the simulators: the app tree the nodes run (``base``) and the
next one (``target``, a changed module), a package of the difference built and signed as ``citynode fuota
build`` builds it, the devices provisioned in ChirpStack with their GenAppKeys and the profiles'
``app_layer_params`` (:mod:`gateway.field.provision`), and ``citynode fuota deploy``'s deployments
(:func:`gateway.field.fuota_deploy.deploy`), carried out by the network-server simulator's
:class:`~gateway.sim.nssim.fuota.FuotaRunner` over the UDP virtual radio to the fleet's MicroPython
nodes (:class:`~gateway.sim.fleet.VirtualFleet` with ``update_pub``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chirpstack_api import api

from gateway.contract import codec
from gateway.field.chirpstack_client import ChirpStackClient
from gateway.field.firmware_build import compile_module
from gateway.field.provision import desired_profile, load_codec_script
from gateway.paths import firmware_dir
from gateway.sim.fleet import VirtualFleet

if TYPE_CHECKING:
    from gateway.sim.nssim import NetworkServerSim

__all__ = ["BASE_VERSION", "TARGET_VERSION", "device_status", "provision_fleet", "update_trees"]

BASE_VERSION = "0.1.0"  # citynode.app.FIRMWARE_VERSION: what a node flashed from this checkout runs
TARGET_VERSION = "0.2.0"
_CHANGED = "citynode/app.py"  # the module the target changes (its FIRMWARE_VERSION)


def update_trees(tree: Path, work: Path, target_version: str = TARGET_VERSION) -> tuple[Path, Path]:
    """Two app trees under ``work``: ``base`` (a copy of the fleet's built ``tree``/lib, VERSION
    ``BASE_VERSION``) and ``target`` (the same with ``citynode/app.mpy`` compiled from a source whose
    ``FIRMWARE_VERSION`` is ``target_version``, VERSION ``target_version``)."""
    base, target = work / f"app-{BASE_VERSION}", work / f"app-{target_version}"
    for d in (base, target):
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(tree / "lib", d)
    (base / "VERSION").write_text(BASE_VERSION + "\n")
    (target / "VERSION").write_text(target_version + "\n")
    src = (firmware_dir() / "lib" / _CHANGED).read_text()
    old = f'FIRMWARE_VERSION = "{BASE_VERSION}"'
    if old not in src:
        raise ValueError(f"{_CHANGED}: no {old!r} to change")
    changed = work / "app.py"
    changed.write_text(src.replace(old, f'FIRMWARE_VERSION = "{target_version}"'))
    compile_module(changed, target / Path(_CHANGED).with_suffix(".mpy"), "lib/" + _CHANGED)
    return base, target


def provision_fleet(client: ChirpStackClient, fleet: VirtualFleet, tenant_id: str,
                    name: str = "citynode") -> str:
    """Create the application, one profile per role (``citynode provision``'s, with TS003/TS004/TS005
    in ``app_layer_params``) and the fleet's devices with their keys (the GenAppKey too, when the fleet
    is provisioned for updates; else none, which ChirpStack takes as the all-zero key) in the API
    simulator, as ``citynode provision`` does in ChirpStack; returns the application id.

    Both the update run and the demo's config downlink provision through here (the API simulator
    refuses to queue for a device it does not know)."""
    app_id = client.create_application(api.Application(tenant_id=tenant_id, name=name))
    profiles: dict[str, str] = {}
    script = load_codec_script()
    for node in fleet.nodes:
        if node.role not in profiles:
            profiles[node.role] = client.create_device_profile(desired_profile(tenant_id, node.role, script))
        client.create_device(api.Device(dev_eui=node.dev_eui, name=node.name, application_id=app_id,
                                        device_profile_id=profiles[node.role], join_eui=node.join_eui,
                                        tags={"role": node.role}))
        client.create_keys(api.DeviceKeys(dev_eui=node.dev_eui, nwk_key=node.app_key, app_key=node.app_key,
                                          gen_app_key=node.gen_app_key))
    return app_id


def device_status(sim: NetworkServerSim, dev_eui: str) -> dict[str, Any]:
    """The newest device_status (fPort 1: firmware version, update outcome, ...) the node sent through
    ``sim``, decoded by the gateway's codec; ``{}`` when it sent none yet.

    Safe to call from :meth:`NetworkServerSim.wait_for`'s predicate (the simulator's lock is reentrant).
    Raises :class:`~gateway.errors.DecodeError` for an fPort 1 payload the codec refuses.
    """
    for e in reversed(sim.events_of("up", dev_eui)):
        if e.message.f_port == 1:
            return dict(codec.decode(1, bytes(e.message.data))["readings"][0])
    return {}
