"""The network-server simulator carries out the FUOTA deployments of the ChirpStack API simulator.

:class:`FuotaRunner` joins the two simulators as ChirpStack's FUOTA scheduler joins its API and its
network server (``chirpstack/src/applayer/fuota/flow.rs``, ``applayer/{multicastsetup,fragmentation,
clocksync}.rs``): ``StartDeployment`` hands it a deployment, and it runs the jobs in ChirpStack's order

    CREATE_MC_GROUP, ADD_DEVS_TO_MC_GROUP, ADD_GWS_TO_MC_GROUP, MC_GROUP_SETUP, FRAG_SESSION_SETUP,
    MC_SESSION, ENQUEUE, FRAG_STATUS (per request_fragmentation_session_status), DELETE_MC_GROUP, COMPLETE

with the same per-device bookkeeping: the unicast requests (McGroupSetupReq on the TS005 port,
FragSessionSetupReq and FragSessionStatusReq on the TS004 port, McClassCSessionReq on TS005) wait in
each device's queue for its next uplink (Class A) and are sent again, up to ``unicast_max_retry_count``
more times, to the devices that have not answered; the answers set the step's ``*_completed_at`` or
ChirpStack's ``error_msg`` on the device's row; devices that never answer get ChirpStack's timeout
message; COMPLETE sets ``completed_at`` and the deployment's tags on the devices that finished without
error. The rows and jobs are those of the API simulator's state, so ``FuotaService.ListDevices`` and
``ListJobs`` show the progress (``citynode fuota status``).

The multicast session is a Class C window: the session start is a GPS time of the nodes' clocks
(:meth:`NetworkServerSim.gps_time`), and each fragment goes to each member's virtual radio as a
downlink datagram whose ``tmst_ms`` is that GPS time in that node's clock, on the deployment's
multicast frequency and data rate, ``fragment_spacing_s`` apart (ChirpStack's
``multicast_class_c_margin``). ``fragment_loss`` drops that share of the (node, fragment) transmissions,
chosen by a random generator seeded with (seed, DevEUI, fragment), as fading would: the same
pattern on every run, whatever the threads' timing. With ``exact_loss`` each node loses exactly that
share of its fragments (rounded), at places drawn from a generator seeded with (seed, DevEUI): a demo
that says "10 % dropped" then drops 10 % on every node, not 10 % on average. The sender keeps at most ``_AHEAD`` fragments
ahead of each node's estimated clock (a virtual radio buffers few datagrams), which assumes the node's
clock runs at ``node_time_scale`` times real time during the session.

Also answered here, as ChirpStack answers it for any device: TS003 AppTimeReq (clock synchronization),
with the node-clock GPS time of the uplink.

Where the simulator shortens ChirpStack's timing (documented in docs/simulators.md): a step moves on
as soon as every device it waits for has answered, instead of after a full ``uplink_interval``; the
waits are real seconds (``uplink_interval_s``, default the device profile's), and the session starts
``session_lead_s`` node-clock seconds after the MC_SESSION job (ChirpStack: (retries + 1) x
uplink_interval).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chirpstack_api import api
from google.protobuf import timestamp_pb2

from gateway.errors import ConfigError
from gateway.sim.chirpstack import SimState, StoredFuota
from gateway.sim.nssim import applayer
from gateway.sim.nssim._firmware import frames
from gateway.sim.nssim.server import NetworkServerSim

__all__ = ["FuotaRunner", "TIMEOUT_MESSAGES"]

log = logging.getLogger("citynode.nssim.fuota")

_AHEAD = 4  # fragments sent ahead of a node's clock (citynode_sim.udp buffers 8 datagrams)
_NO_DEVICES = "There are no devices available to complete this step"
# storage/fuota.rs set_device_timeout_error, per step (spelled as ChirpStack spells them)
TIMEOUT_MESSAGES = {
    "mc_group_setup_completed_at": "McGroupSetupReq timeout.",
    "mc_session_completed_at": "McSessionReq timeout",
    "frag_session_setup_completed_at": "FragSessionSetupReq timeout.",
    "frag_status_completed_at": "FragStatusReq timeout.",
}
_WARNINGS = {
    "mc_group_setup_completed_at": "{} devices did not complete the multicast group setup",
    "frag_session_setup_completed_at": "{} devices did not complete the fragmentation session setup",
    "mc_session_completed_at": "{} devices did not complete the multicast session setup",
    "frag_status_completed_at": "{} devices did not complete the fragmentation status",
}


class _JobError(Exception):
    """A job that cannot run (ChirpStack puts "Error: ..." on the job)."""


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


@dataclass
class _Run:
    """One deployment being carried out: what ChirpStack keeps in the deployment row and the group."""

    dep_id: str
    profile: api.DeviceProfile
    mc_app_s_key: bytes = field(default=b"", repr=False)
    mc_nwk_s_key: bytes = field(default=b"", repr=False)
    session_start_gps: float | None = None
    session_end_gps: float | None = None
    sender: threading.Thread | None = None
    sent: dict[str, int] = field(default_factory=dict)  # dev_eui -> fragments transmitted to it
    dropped: dict[str, int] = field(default_factory=dict)  # dev_eui -> fragments lost (simulated)


class FuotaRunner:
    """Carries out the API simulator's FUOTA deployments on a running :class:`NetworkServerSim`.

    ``state``: the ChirpStack API simulator's state; ``sim``: the network-server simulator the nodes
    talk to. ``uplink_interval_s``: real seconds a step waits for answers per attempt (None: the device
    profile's ``uplink_interval``). ``session_lead_s``: node-clock seconds from the MC_SESSION job to the
    session start (None: ChirpStack's (retries + 1) x uplink_interval). ``fragment_spacing_s``:
    node-clock seconds between two multicast fragments (ChirpStack's default margin: 5 s).
    ``fragment_loss``: share (0..1) of (node, fragment) transmissions dropped; ``seed`` makes it
    repeatable. ``node_time_scale``: how much faster than real time the nodes' clocks run (the
    VirtualClock's ``scale``). Use ``attach()`` once; ``wait(dep_id)`` blocks until COMPLETE.
    """

    def __init__(self, state: SimState, sim: NetworkServerSim, *, uplink_interval_s: float | None = None,
                 session_lead_s: float | None = None, fragment_spacing_s: float = 5.0,
                 fragment_loss: float = 0.0, seed: int = 0, node_time_scale: float = 1.0,
                 on_event: Callable[[str], None] | None = None, exact_loss: bool = False) -> None:
        if not 0.0 <= fragment_loss < 1.0:
            raise ValueError(f"fragment_loss: {fragment_loss!r} not in [0, 1)")
        self.state = state
        self.sim = sim
        self.uplink_interval_s = uplink_interval_s
        self.session_lead_s = session_lead_s
        self.fragment_spacing_s = fragment_spacing_s
        self.fragment_loss = fragment_loss
        self.node_time_scale = node_time_scale
        self.exact_loss = exact_loss
        self.on_event = on_event
        self._seed = seed
        self._runs: dict[str, _Run] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()

    # ------------------------------------------------------------------ wiring
    def attach(self) -> FuotaRunner:
        """Take deployments from ``StartDeployment`` and answers from the nodes' uplinks."""
        self.state.fuota_listeners.append(self.start)
        self.sim.uplink_listeners.append(self.on_uplink)
        return self

    def close(self) -> None:
        """Stop every deployment still running (they stay as they are in the API state)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        for t in list(self._threads.values()):
            t.join(10)

    def start(self, dep_id: str) -> None:
        t = threading.Thread(target=self._run, args=(dep_id,), name=f"fuota-{dep_id[:8]}", daemon=True)
        self._threads[dep_id] = t
        t.start()

    def wait(self, dep_id: str, timeout_s: float = 60.0) -> None:
        """Block until the deployment's thread has ended (COMPLETE or an error)."""
        t = self._threads.get(dep_id)
        if t is None:
            raise KeyError(f"deployment {dep_id} was never started here")
        t.join(timeout_s)
        if t.is_alive():
            jobs = [j.job for j in self.state.fuota[dep_id].jobs]
            raise TimeoutError(f"FUOTA deployment {dep_id} not done in {timeout_s} s; jobs so far: {jobs}")

    def fragments_sent(self, dep_id: str) -> tuple[dict[str, int], dict[str, int]]:
        """(fragments transmitted, fragments dropped by the simulated loss) per DevEUI."""
        run = self._runs[dep_id]
        return dict(run.sent), dict(run.dropped)

    def _say(self, text: str) -> None:
        log.info("%s", text)
        if self.on_event is not None:
            self.on_event(text)

    # ------------------------------------------------------------------ uplinks (on the nssim loop)
    def on_uplink(self, dev_eui: str, fport: int, payload: bytes, tmst_ms: int) -> None:
        """An uplink: AppTimeReq (TS003) is answered; TS004/TS005 answers update the device's row of
        its latest deployment (``storage/fuota.rs`` get_latest_device_by_dev_eui). As ChirpStack, only
        the first command of an uplink is parsed."""
        with self.state.lock:
            found = self._latest(dev_eui)
            profile = self._profile_of(dev_eui, found)
        if profile is None:
            return
        alp = profile.app_layer_params
        ports = {"ts003": alp.ts003_f_port or 202, "ts004": alp.ts004_f_port or 201, "ts005": alp.ts005_f_port or 200}
        if fport == ports["ts003"] and alp.ts003_version:
            ans = applayer.app_time_ans(payload, self.sim.gps_time(dev_eui, tmst_ms))
            if ans is not None:
                self.sim.queue_downlink(dev_eui, fport, ans)
            return
        if found is None:
            return
        stored, row = found
        v4 = 2 if alp.ts004_version == api.TS004_V200 else 1
        v5 = 2 if alp.ts005_version == api.TS005_V200 else 1
        with self.state.lock:
            if fport == ports["ts005"] and alp.ts005_version:
                err = applayer.mc_group_setup_ans_error(payload)
                if err is not None:
                    if err:
                        row.error_msg = "Error: McGroupSetupAns response id_error=true"
                    else:
                        row.mc_group_setup_completed_at.CopyFrom(_now())
                cc = applayer.parse_mc_class_c_session_ans(payload, v5)
                if cc is not None:
                    if cc.ok:
                        row.mc_session_completed_at.CopyFrom(_now())
                    else:
                        row.error_msg = cc.error_msg(v5)
            elif fport == ports["ts004"] and alp.ts004_version:
                msg = applayer.frag_session_setup_ans_error(payload, v4)
                if msg is not None:
                    if msg:
                        row.error_msg = msg
                    else:
                        row.frag_session_setup_completed_at.CopyFrom(_now())
                status = applayer.parse_frag_session_status_ans(payload, v4)
                if status is not None:
                    if status.ok:
                        row.frag_status_completed_at.CopyFrom(_now())
                    else:
                        row.error_msg = status.error_msg(v4)
                    self._say(f"fuota {stored.deployment.id[:8]} {dev_eui} FragSessionStatusAns "
                              f"received={status.nb_frag_received} missing={status.missing_frag}")
        with self._changed:
            self._changed.notify_all()

    def _latest(self, dev_eui: str) -> tuple[StoredFuota, api.FuotaDeploymentDeviceListItem] | None:
        best = None
        for stored in self.state.fuota.values():
            row = stored.devices.get(dev_eui)
            if row is not None and (best is None or row.created_at.ToNanoseconds()
                                    >= best[1].created_at.ToNanoseconds()):
                best = (stored, row)
        return best

    def _profile_of(self, dev_eui: str, found: tuple[StoredFuota, object] | None) -> api.DeviceProfile | None:
        dev = self.state.devices.get(dev_eui)
        if dev is None:
            return None
        return self.state.device_profiles.get(dev.device.device_profile_id)

    # ------------------------------------------------------------------ the jobs
    def _run(self, dep_id: str) -> None:
        with self.state.lock:
            stored = self.state.fuota[dep_id]
            profile = self.state.device_profiles[stored.deployment.device_profile_id]
        run = _Run(dep_id, profile)
        self._runs[dep_id] = run
        job = "CREATE_MC_GROUP"
        try:
            while job and not self._stop.is_set():
                nxt = self._dispatch(run, stored, job)
                if nxt is None:
                    break
                job = nxt
        except _JobError as exc:
            with self.state.lock:
                stored.jobs[-1].error_msg = f"Error: {exc}"
            self._say(f"fuota {dep_id[:8]} {job}: Error: {exc} (the simulator stops here)")

    def _job(self, stored: StoredFuota, name: str, max_retry: int = 0) -> api.FuotaDeploymentJob:
        """storage/fuota.rs create_job: completes the open jobs and adds this one."""
        with self.state.lock:
            now = _now()
            current = stored.jobs[-1] if stored.jobs else None
            if current is not None and current.job == name:
                return current
            for j in stored.jobs:
                if not j.HasField("completed_at"):
                    j.completed_at.CopyFrom(now)
            j = api.FuotaDeploymentJob(job=name, created_at=now, scheduler_run_after=now, max_retry_count=max_retry)
            stored.jobs.append(j)
            return j

    def _dispatch(self, run: _Run, stored: StoredFuota, name: str) -> str | None:
        d = stored.deployment
        retries = d.unicast_max_retry_count
        # flow.rs: only these three jobs get unicast_max_retry_count; FRAG_STATUS asks once (0 retries)
        job = self._job(stored, name, retries if name in ("MC_GROUP_SETUP", "FRAG_SESSION_SETUP", "MC_SESSION")
                        else 0)
        self._say(f"fuota {d.id[:8]} job {name}")
        alp = run.profile.app_layer_params
        if name == "CREATE_MC_GROUP":
            if not alp.ts005_version:
                raise _JobError("Device-profile does not support TS005")
            if not alp.ts004_version:
                raise _JobError("Device-profile does not support TS004")
            run.mc_app_s_key, run.mc_nwk_s_key = applayer.mc_session_keys(stored.multicast_key, stored.multicast_addr)
            job.attempt_count += 1
            return "ADD_DEVS_TO_MC_GROUP"
        if name == "ADD_DEVS_TO_MC_GROUP":
            job.attempt_count += 1
            return "ADD_GWS_TO_MC_GROUP"
        if name == "ADD_GWS_TO_MC_GROUP":
            job.attempt_count += 1
            return "MC_GROUP_SETUP"
        if name == "MC_GROUP_SETUP":
            return self._unicast_step(run, stored, job, None, "mc_group_setup_completed_at",
                                      self._mc_group_setup_req, "FRAG_SESSION_SETUP")
        if name == "FRAG_SESSION_SETUP":
            return self._unicast_step(run, stored, job, "mc_group_setup_completed_at",
                                      "frag_session_setup_completed_at", self._frag_session_setup_req, "MC_SESSION")
        if name == "MC_SESSION":
            return self._unicast_step(run, stored, job, "frag_session_setup_completed_at", "mc_session_completed_at",
                                      self._mc_session_req, "ENQUEUE")
        if name == "ENQUEUE":
            return self._enqueue(run, stored, job)
        if name == "FRAG_STATUS":
            return self._unicast_step(run, stored, job, "mc_session_completed_at", "frag_status_completed_at",
                                      lambda _eui: applayer.frag_session_status_req(), "DELETE_MC_GROUP")
        if name == "DELETE_MC_GROUP":
            if run.session_end_gps is not None:
                self._wait_gps(run, run.session_end_gps)
            if run.sender is not None:
                run.sender.join()
            job.attempt_count += 1
            return "COMPLETE"
        if name == "COMPLETE":
            self._complete(stored, job)
            return None
        raise _JobError(f"Invalid FuotaJob value: {name}")

    def _unicast_step(self, run: _Run, stored: StoredFuota, job: api.FuotaDeploymentJob, prereq: str | None,
                      done: str, request: Callable[[str], bytes], next_job: str) -> str:
        """One of ChirpStack's unicast steps: send to the devices that finished ``prereq`` but not
        ``done``, wait for answers, repeat up to unicast_max_retry_count more times, then time out."""
        alp = run.profile.app_layer_params
        port = (alp.ts004_f_port or 201) if done.startswith("frag") else (alp.ts005_f_port or 200)
        wait_s = self.uplink_interval_s if self.uplink_interval_s is not None else float(run.profile.uplink_interval)
        while not self._stop.is_set():
            with self.state.lock:
                rows = list(stored.devices.values())
                ready = [r for r in rows if prereq is None or r.HasField(prereq)]
                pending = [r.dev_eui for r in ready if not r.HasField(done)]
                if job.attempt_count > job.max_retry_count:
                    for r in rows:  # set_device_timeout_error
                        if not r.error_msg and not r.HasField(done):
                            r.error_msg = TIMEOUT_MESSAGES[done]
                    if pending:
                        job.warning_msg = _WARNINGS[done].format(len(pending))
                    return self._after(run, next_job)
                job.attempt_count += 1
                if prereq is not None and not ready:
                    job.error_msg = _NO_DEVICES
                    return "DELETE_MC_GROUP"
                if done == "mc_session_completed_at" and run.session_start_gps is None:
                    self._plan_session(run, stored, [r.dev_eui for r in ready])
            for eui in pending:
                try:
                    self.sim.queue_downlink(eui, port, request(eui))
                except ConfigError as exc:  # not on this radio network: it will time out, as unheard
                    self._say(f"fuota {stored.deployment.id[:8]} {eui}: {exc}")
            if not pending:
                return self._after(run, next_job)
            self._wait_answers(stored, pending, done, wait_s)

    def _after(self, run: _Run, next_job: str) -> str:
        if next_job == "ENQUEUE" and run.session_start_gps is not None:
            self._wait_gps(run, run.session_start_gps)
        return next_job

    def _wait_answers(self, stored: StoredFuota, euis: list[str], done: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        with self._changed:
            while not self._stop.is_set():
                with self.state.lock:
                    left = [e for e in euis if e in stored.devices and not stored.devices[e].HasField(done)
                            and not stored.devices[e].error_msg]
                remaining = deadline - time.monotonic()
                if not left or remaining <= 0:
                    return
                self._changed.wait(min(remaining, 0.5))

    # ------------------------------------------------------------------ the requests
    def _mc_group_setup_req(self, dev_eui: str) -> bytes:
        stored = self._stored_of(dev_eui)
        with self.state.lock:
            keys = self.state.devices[dev_eui].keys
        # ChirpStack reads gen_app_key from the device keys; an unset one is the all-zero key there.
        gen = bytes.fromhex(keys.gen_app_key) if keys is not None and keys.gen_app_key else bytes(16)
        ke = applayer.mc_ke_key(applayer.mc_root_key(gen))
        return applayer.mc_group_setup_req(stored.multicast_addr, applayer.encrypt_mc_key(ke, stored.multicast_key))

    def _frag_session_setup_req(self, dev_eui: str) -> bytes:
        stored = self._stored_of(dev_eui)
        d = stored.deployment
        with self.state.lock:
            dev = self.state.devices[dev_eui]
            profile = self.state.device_profiles[d.device_profile_id]
            version = 2 if profile.app_layer_params.ts004_version == api.TS004_V200 else 1
            # v2: the device's ts004_session_cnt[0] is sent, then incremented (flow.rs)
            cnt = dev.ts004_session_cnt
            if version == 2:
                dev.ts004_session_cnt = cnt + 1
            gen = bytes.fromhex(dev.keys.gen_app_key) if dev.keys is not None and dev.keys.gen_app_key else bytes(16)
        return applayer.frag_session_setup_req(version, d.payload, d.fragmentation_fragment_size,
                                               d.fragmentation_block_ack_delay, d.fragmentation_descriptor,
                                               d.fragmentation_matrix, cnt, gen)

    def _mc_session_req(self, dev_eui: str) -> bytes:
        stored = self._stored_of(dev_eui)
        run = self._runs[stored.deployment.id]
        d = stored.deployment
        assert run.session_start_gps is not None
        return applayer.mc_class_c_session_req(int(run.session_start_gps), d.multicast_timeout,
                                               d.multicast_frequency, d.multicast_dr)

    def _stored_of(self, dev_eui: str) -> StoredFuota:
        with self.state.lock:
            found = self._latest(dev_eui)
        assert found is not None
        return found[0]

    # ------------------------------------------------------------------ the multicast session
    def _plan_session(self, run: _Run, stored: StoredFuota, euis: list[str]) -> None:
        d = stored.deployment
        if d.multicast_group_type != api.CLASS_C:
            raise _JobError("the simulator carries out Class C multicast sessions only")
        lead = self.session_lead_s
        if lead is None:
            lead = (d.unicast_max_retry_count + 1) * run.profile.uplink_interval
        now = self._gps_now(euis)
        # whole seconds: SessionTime is an integer GPS second
        run.session_start_gps = float(int(now + lead) + 1)
        run.session_end_gps = run.session_start_gps + (1 << d.multicast_timeout)
        self._say(f"fuota {d.id[:8]} Class C session at GPS {int(run.session_start_gps)} for "
                  f"{1 << d.multicast_timeout} s on {d.multicast_frequency} Hz DR{d.multicast_dr}")

    def _gps_now(self, euis: list[str]) -> float:
        """The latest of the members' clocks now, as GPS time (nodes not heard yet are skipped)."""
        best = None
        for eui in euis:
            ms = self.sim.node_now_ms(eui, self.node_time_scale)
            if ms is None:
                continue
            gps = self.sim.gps_time(eui, int(ms))
            best = gps if best is None else max(best, gps)
        if best is None:
            return time.time() - 315964800 + 18
        return best

    def _wait_gps(self, run: _Run, gps: float) -> None:
        with self.state.lock:
            euis = list(self.state.fuota[run.dep_id].devices)
        while not self._stop.is_set() and self._gps_now(euis) < gps:
            time.sleep(0.02)

    def _enqueue(self, run: _Run, stored: StoredFuota, job: api.FuotaDeploymentJob) -> str:
        d = stored.deployment
        job.attempt_count += 1
        with self.state.lock:
            members = [r.dev_eui for r in stored.devices.values() if r.HasField("mc_session_completed_at")]
            profile = run.profile
        if not members:
            job.error_msg = _NO_DEVICES
            return "DELETE_MC_GROUP"
        version = 2 if profile.app_layer_params.ts004_version == api.TS004_V200 else 1
        fragments = applayer.data_fragments(d.payload, d.fragmentation_fragment_size,
                                            d.fragmentation_redundancy_percentage, version)
        port = profile.app_layer_params.ts004_f_port or 201
        phys = [frames.build_downlink(run.mc_nwk_s_key, run.mc_app_s_key, stored.multicast_addr, fcnt, port, frag,
                                      b"", False) for fcnt, frag in enumerate(fragments)]
        run.sender = threading.Thread(target=self._send_fragments, args=(run, d, members, phys),
                                      name=f"fuota-mc-{d.id[:8]}", daemon=True)
        run.sender.start()
        self._say(f"fuota {d.id[:8]} enqueued {len(phys)} fragments for {len(members)} devices")
        status = d.request_fragmentation_session_status
        if status == api.NO_REQUEST:
            return "DELETE_MC_GROUP"
        if status == api.AFTER_SESSION_TIMEOUT:
            assert run.session_end_gps is not None
            self._wait_gps(run, run.session_end_gps)
        return "FRAG_STATUS"

    def _send_fragments(self, run: _Run, d: api.FuotaDeployment, members: list[str], phys: list[bytes]) -> None:
        assert run.session_start_gps is not None
        spacing = self.fragment_spacing_s
        # the first fragment one spacing after the start: the node opens its window at the start
        times = [run.session_start_gps + (i + 1) * spacing for i in range(len(phys))]
        for eui in members:
            run.sent[eui] = 0
            run.dropped[eui] = 0
        nxt = dict.fromkeys(members, 0)
        lost: dict[str, set[int]] = {}
        if self.exact_loss:
            n_lost = round(self.fragment_loss * len(phys))
            lost = {e: set(random.Random(f"{self._seed}:{e}").sample(range(len(phys)), n_lost)) for e in members}
        while not self._stop.is_set() and any(nxt[e] < len(phys) for e in members):
            for eui in members:
                i = nxt[eui]
                if i >= len(phys):
                    continue
                now_ms = self.sim.node_now_ms(eui, self.node_time_scale)
                now = self.sim.gps_time(eui, int(now_ms)) if now_ms is not None else times[i]
                if times[i] - now > _AHEAD * spacing:
                    continue
                nxt[eui] = i + 1
                if (i in lost[eui] if self.exact_loss
                        else random.Random(f"{self._seed}:{eui}:{i}").random() < self.fragment_loss):
                    run.dropped[eui] += 1
                    continue
                if self.sim.send_class_c(eui, phys[i], d.multicast_frequency, d.multicast_dr, times[i]):
                    run.sent[eui] += 1
            time.sleep(0.005)
        self._say(f"fuota {d.id[:8]} fragments sent: {run.sent}, dropped (simulated loss): {run.dropped}")

    # ------------------------------------------------------------------ the end
    def _complete(self, stored: StoredFuota, job: api.FuotaDeploymentJob) -> None:
        job.attempt_count += 1
        with self.state.lock:
            d = stored.deployment
            steps = ["mc_group_setup_completed_at", "mc_session_completed_at", "frag_session_setup_completed_at"]
            if d.request_fragmentation_session_status != api.NO_REQUEST:
                steps.append("frag_status_completed_at")
            now = _now()
            rows = list(stored.devices.values())
            for r in rows:  # set_device_completed: every step's timestamp present (errors or not)
                if all(r.HasField(s) for s in steps):
                    r.completed_at.CopyFrom(now)
            ok = [r for r in rows if r.HasField("completed_at") and not r.error_msg]
            for r in ok:
                dev = self.state.devices.get(r.dev_eui)
                if dev is not None:
                    dev.device.tags.update(d.on_complete_set_device_tags)
            if len(ok) != len(rows):
                job.warning_msg = f"{len(rows) - len(ok)} devices did not complete the FUOTA deployment"
            job.completed_at.CopyFrom(now)
            stored.completed_at = now
            stored.updated_at = now
        self._say(f"fuota {d.id[:8]} complete: {len(ok)} of {len(rows)} devices")
