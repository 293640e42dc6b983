"""Each FUOTA exchange of the network-server simulator, message by message, against the node's own
handlers (``citynode.fuota`` on CPython) and against the independent network-side reference of the
node's tests (``tests/firmware/fuota/server_side.py``, written from the specifications and ChirpStack).
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gateway.paths import firmware_module
from gateway.sim.nssim import applayer
from gateway.sim.nssim._firmware import frames

GEN_APP_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
MC_KEY = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")
MC_ADDR = 0x01A2B3C4
PAYLOAD = bytes(random.Random(19).randrange(256) for _ in range(1000))


def _reference() -> ModuleType:
    path = Path(__file__).parents[1] / "firmware" / "fuota" / "server_side.py"
    spec = importlib.util.spec_from_file_location("fuota_server_side", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = _reference()


def _node(version: int) -> tuple[Any, Any]:  # firmware objects
    fuota = firmware_module("citynode.fuota")
    store = firmware_module("citynode.fuota.store").RamStore(4096)
    return fuota.Fuota(GEN_APP_KEY, store, versions=(version, version, version)), store


def _mc_setup() -> bytes:
    ke = applayer.mc_ke_key(applayer.mc_root_key(GEN_APP_KEY))
    return applayer.mc_group_setup_req(MC_ADDR, applayer.encrypt_mc_key(ke, MC_KEY))


@pytest.mark.parametrize("version", [1, 2])
def test_mc_group_setup_gives_the_node_the_groups_session_keys(version: int) -> None:
    node, _ = _node(version)
    req = _mc_setup()
    assert req == REF.chirpstack_flow(version, PAYLOAD, GEN_APP_KEY, MC_KEY, MC_ADDR, 50, 20, 0, 0, set())[0][2]
    ans = node.handle(200, req)
    assert applayer.mc_group_setup_ans_error(ans) is False  # McGroupSetupAns, no IDerror
    addr, app_s, nwk_s, lo, hi = node.multicast.groups[0]
    assert (addr, lo, hi) == (MC_ADDR, 0, 0xFFFFFFFF)
    assert (app_s, nwk_s) == applayer.mc_session_keys(MC_KEY, MC_ADDR)


def test_a_group_the_node_cannot_hold_is_an_id_error() -> None:
    node, _ = _node(2)
    req = bytearray(_mc_setup())
    req[1] = 3  # group 3: the node keeps one group
    assert applayer.mc_group_setup_ans_error(node.handle(200, bytes(req))) is True


@pytest.mark.parametrize("version", [1, 2])
def test_frag_session_setup_matches_chirpstack_and_the_node_accepts_it(version: int) -> None:
    node, _ = _node(version)
    req = applayer.frag_session_setup_req(version, PAYLOAD, 50, 0, b"", session_cnt=0, gen_app_key=GEN_APP_KEY)
    assert req == REF.chirpstack_flow(version, PAYLOAD, GEN_APP_KEY, MC_KEY, MC_ADDR, 50, 20, 0, 0, set())[1][2]
    assert applayer.frag_session_setup_ans_error(node.handle(201, req), version) == ""


def test_a_replayed_v2_session_counter_is_chirpstacks_error_message() -> None:
    node, _ = _node(2)
    req = applayer.frag_session_setup_req(2, PAYLOAD, 50, 0, b"", session_cnt=5, gen_app_key=GEN_APP_KEY)
    node.handle(201, req)
    assert applayer.frag_session_setup_ans_error(node.handle(201, req), 2) == (
        "Error: FragSessionAns response frag_algo_unsupported=false, not_enough_memory=false, "
        "frag_index_unsupported=false, wrong_descriptor=false, session_cnt_replay=true")


@pytest.mark.parametrize("version", [1, 2])
def test_class_c_session_request_opens_the_window_the_node_reports(version: int) -> None:
    node, _ = _node(version)
    node.handle(200, _mc_setup())
    req = applayer.mc_class_c_session_req(1_400_000_100, 10, 869525000, 3)
    assert req == REF.chirpstack_flow(version, PAYLOAD, GEN_APP_KEY, MC_KEY, MC_ADDR, 50, 20,
                                      1_400_000_100, 0, set())[2][2]
    ans = applayer.parse_mc_class_c_session_ans(node.handle(200, req, 1_400_000_000), version)
    assert ans is not None and ans.ok and ans.time_to_start == 100
    assert node.multicast.class_c[0] == (1_400_000_100, 1_400_000_100 + 1024, 869525000, 3)


def test_a_session_for_an_undefined_group_is_chirpstacks_error_message() -> None:
    node, _ = _node(2)
    ans = applayer.parse_mc_class_c_session_ans(
        node.handle(200, applayer.mc_class_c_session_req(1000, 4, 869525000, 3), 0), 2)
    assert ans is not None and not ans.ok
    assert ans.error_msg(2) == ("Error: McClassCSessionAns response dr_error: false, freq_error: false, "
                                "mc_group_undefined: true, start_missed: false")


@pytest.mark.parametrize("version", [1, 2])
def test_fragments_match_the_reference_encoder(version: int) -> None:
    m, size = 20, 50
    coded = applayer.data_fragments(PAYLOAD, size, 20, version)
    ref = REF.encode(PAYLOAD, size, 4, version)
    assert len(coded) == m + 4
    assert [c[3:] for c in coded] == ref
    assert [int.from_bytes(c[1:3], "little") for c in coded] == list(range(1, m + 5))  # N, FragIndex 0


@pytest.mark.parametrize("version", [1, 2])
def test_multicast_fragments_with_10_percent_loss_rebuild_the_block_and_the_status_says_so(version: int) -> None:
    node, store = _node(version)
    node.handle(200, _mc_setup())
    node.handle(201, applayer.frag_session_setup_req(version, PAYLOAD, 50, 0, b"", gen_app_key=GEN_APP_KEY))
    node.handle(200, applayer.mc_class_c_session_req(1000, 8, 869525000, 5), 900)
    app_s, nwk_s = applayer.mc_session_keys(MC_KEY, MC_ADDR)
    lost = {2, 17}  # 2 of 24 transmissions, a pattern the parity matrix covers (the reference's rank oracle)
    assert REF.decodable(20, 4, lost, version)
    for fcnt, frag in enumerate(applayer.data_fragments(PAYLOAD, 50, 20, version)):
        if fcnt in lost:
            continue
        phy = frames.build_downlink(nwk_s, app_s, MC_ADDR, fcnt, 201, frag, b"", False)
        opened = node.multicast.open_frame(phy, 1001 + fcnt)
        assert opened is not None, f"the node refused multicast frame {fcnt}"
        group, port, clear = opened
        assert (group, port) == (0, 201)
        node.handle(port, clear, 1001 + fcnt)
    assert node.fragmentation.complete and not node.fragmentation.mic_error
    assert bytes(store.buf[:len(PAYLOAD)]) == PAYLOAD
    status = applayer.parse_frag_session_status_ans(node.handle(201, applayer.frag_session_status_req()), version)
    # the node stops counting once the block is complete (docs/design/fuota.md): at most the 22 heard
    assert status is not None and status.ok and 20 <= status.nb_frag_received <= 22


def test_a_node_missing_fragments_reports_chirpstacks_error_message() -> None:
    node, _ = _node(1)
    node.handle(201, applayer.frag_session_setup_req(1, PAYLOAD, 50, 0, b""))
    for frag in applayer.data_fragments(PAYLOAD, 50, 20, 1)[:10]:
        node.handle(201, frag)
    status = applayer.parse_frag_session_status_ans(node.handle(201, applayer.frag_session_status_req()), 1)
    assert status is not None and not status.ok
    assert status.error_msg(1) == ("Error: FragSessionStatusAns response nb_frag_received=10, missing_frag=10, "
                                   "not_enough_matrix_memory=false")


def test_app_time_answer_corrects_the_node_clock_by_the_difference() -> None:
    node, _ = _node(2)
    clock = firmware_module("citynode.fuota.clock").ClockSync(2)
    req = clock.app_time_req(1200)
    ans = applayer.app_time_ans(req, 1234.7)  # ChirpStack's test: gateway 1234 s, device 1200 s -> +34
    assert ans is not None and clock.handle(ans) is None
    assert clock.take_correction() == 34 and clock.synced
    assert applayer.app_time_ans(clock.app_time_req(1234), 1234.2) is None  # 0 and AnsRequired clear: silence
    assert applayer.app_time_ans(clock.app_time_req(1234, ans_required=True), 1234.2) is not None
    del node
