"""The pipeline: every ChirpStack event type, exactly-once, FCnt health, and bad input ending in dead letters."""

from __future__ import annotations

import json
import os
import random

import cbor2
import pytest
from google.protobuf import json_format

from gateway.service.pipeline import Pipeline, PipelineOptions


@pytest.fixture
def pipeline(store):
    return Pipeline(store)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_uplink_is_decoded_normalised_and_stored_once(pipeline, store, events, aq_payload, encoding):
    msg = events.up(f_cnt=3, data=aq_payload(19.25))
    body = events.body(msg, encoding)
    result = pipeline.handle("up", body, encoding, "mqtt")
    assert (result.outcome, result.readings, result.dev_eui) == ("stored", 8, "0004a30b001c0530")
    assert pipeline.handle("up", body, encoding, "mqtt").outcome == "duplicate"
    temps = store.readings(field="temperature")
    assert [(s.reading.value, s.reading.unit, s.radio.rssi) for s in temps] == [(19.25, "°C", -87)]
    dev = store.device("0004a30b001c0530")
    assert (dev.role, dev.battery, dev.uplinks, dev.last_fcnt) == ("air_quality", 3.71, 1, 3)
    assert pipeline.metrics.value("citynode_duplicates_total") == 1
    assert pipeline.metrics.value("citynode_uplinks_decoded_total") == 1


def test_fcnt_gaps_and_resets_are_counted(pipeline, store, events, aq_payload):
    for fcnt in (10, 11, 14, 2):  # 12, 13 lost; then the node restarted its counter (0, 1 lost)
        pipeline.handle("up", events.body(events.up(f_cnt=fcnt, data=aq_payload())), "json", "mqtt")
    dev = store.device("0004a30b001c0530")
    assert (dev.fcnt_gaps, dev.resets, dev.last_fcnt) == (4, 1, 2)


def test_join_resets_the_expected_counter(pipeline, store, events, aq_payload):
    pipeline.handle("up", events.body(events.up(f_cnt=500, data=aq_payload())), "json", "mqtt")
    assert pipeline.handle("join", events.body(events.join()), "json", "mqtt").outcome == "stored"
    pipeline.handle(
        "up", events.body(events.up(f_cnt=0, data=aq_payload(), dedup="after-join")), "json", "mqtt"
    )
    dev = store.device("0004a30b001c0530")
    assert (dev.joins, dev.resets, dev.fcnt_gaps) == (1, 0, 0)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_status_ack_txack_update_the_device(pipeline, store, events, encoding):
    assert (
        pipeline.handle("status", events.body(events.status(margin=7), encoding), encoding, "http").outcome
        == "stored"
    )
    assert (
        pipeline.handle("status", events.body(events.status(margin=7), encoding), encoding, "http").outcome
        == "duplicate"
    )
    assert pipeline.handle("ack", events.body(events.ack(), encoding), encoding, "http").outcome == "stored"
    assert (
        pipeline.handle("txack", events.body(events.txack(), encoding), encoding, "http").outcome == "stored"
    )
    dev = store.device("0004a30b001c0530")
    assert (dev.margin, dev.last_event, dev.name) == (7, "txack", "node-0530")
    assert store.event_count() == 3


def test_uplink_codec_log_is_a_dead_letter_other_logs_are_not(pipeline, store, events):
    res = pipeline.handle("log", events.body(events.log()), "json", "mqtt")
    assert res.outcome == "dead_letter"
    assert (
        pipeline.handle(
            "log", events.body(events.log(code="OTAA", description="join ok")), "json", "mqtt"
        ).outcome
        == "stored"
    )
    [dl] = store.dead_letters()
    assert dl.source == "chirpstack-log" and dl.dev_eui == "0004a30b001c0530"
    assert "ERROR UPLINK_CODEC: TypeError: data is undefined" in dl.reason
    assert "deduplication_id=5c8d0b6a" in dl.reason


def _json_with(events, **overrides) -> bytes:
    body = json.loads(events.body(events.up(data=b"\x00")))
    body.update(overrides)
    return json.dumps(body).encode()


def _bad_inputs(events):
    rnd = random.Random(1)
    valid = cbor2.dumps([1, 2150, 452, 132, 120000, 31, 54, 98, 71])
    return [
        # (description, kind, body, encoding, expected words in the reason)
        ("not JSON", "up", b"{{{", "json", "invalid JSON"),
        ("bad base64", "up", _json_with(events, data="!!not-base64!!"), "json", "not valid base64"),
        ("truncated CBOR", "up", events.body(events.up(data=valid[:-3])), "json", "fPort 10"),
        ("wrong fPort", "up", events.body(events.up(data=valid, f_port=99)), "json", "fPort 99"),
        ("empty payload", "up", events.body(events.up(data=b"")), "json", "fPort 10"),
        (
            "random payload",
            "up",
            events.body(events.up(data=rnd.randbytes(20)), "protobuf"),
            "protobuf",
            "fPort 10",
        ),
        ("random body", "up", rnd.randbytes(64), "protobuf", "up event"),
        ("random json", "join", os.urandom(0) + b'"just a string"', "json", "not an object"),
        ("no devEui", "up", _json_with(events, deviceInfo={}), "json", "devEui"),
        ("unknown type", "bogus", b"{}", "json", "unknown ChirpStack event type"),
    ]


def test_bad_input_all_ends_in_dead_letters_with_a_reason_and_never_raises(pipeline, store, events):
    cases = _bad_inputs(events)
    for i, (what, kind, body, encoding, words) in enumerate(cases):
        if kind == "up" and encoding == "json" and what not in ("not JSON", "bad base64"):
            # give each decodable-envelope case its own deduplication id
            doc = json.loads(body)
            doc["deduplicationId"] = f"bad-{i}"
            body = json.dumps(doc).encode()
        res = pipeline.handle(kind, body, encoding, "mqtt", dev_eui_hint="0004a30b001c0530")
        assert res.outcome == "dead_letter", what
        assert words in res.reason, (what, res.reason)
    letters = store.dead_letters(100)
    assert len(letters) == len(cases)
    assert all(dl.reason for dl in letters)
    # undecodable uplinks are also stored as events (exactly-once, FCnt health), their payload kept
    [truncated] = [
        dl for dl in letters if dl.raw == cbor2.dumps([1, 2150, 452, 132, 120000, 31, 54, 98, 71])[:-3]
    ]
    assert truncated.source == "decode" and truncated.raw.hex() in truncated.reason
    assert pipeline.metrics.value("citynode_dead_letters_total") == len(cases)


def test_trusted_object_is_used_instead_of_data(store, events):
    pipeline = Pipeline(store, PipelineOptions(trust_object=True))
    msg = events.up(data=b"\xff")  # not a valid citynode payload: must not be decoded
    json_format.ParseDict(
        {"type": "bin_fill", "version": 1, "readings": [{"fill_level": 40, "tilt": True}]}, msg.object
    )
    assert pipeline.handle("up", events.body(msg), "json", "mqtt").readings == 2
    assert {s.reading.field: (s.reading.value, s.reading.unit) for s in store.readings()} == {
        "fill_level": (40, "%"),
        "tilt": (True, None),
    }


def test_object_is_ignored_unless_trusted_and_codec_tag_selects(store, events, aq_payload):
    pipeline = Pipeline(store)
    msg = events.up(data=aq_payload())
    json_format.ParseDict({"type": "bin_fill", "readings": [{"fill_level": 99}]}, msg.object)
    pipeline.handle("up", events.body(msg), "json", "mqtt")
    assert [s.reading.message_type for s in store.readings()][0] == "air_quality"
    tagged = events.up(f_cnt=2, data=b"\xff", dev_eui="00000000000000aa", tags={"codec": "chirpstack-object"})
    json_format.ParseDict({"type": "bin_fill", "readings": [{"fill_level": 99}]}, tagged.object)
    assert pipeline.handle("up", events.body(tagged), "json", "mqtt").readings == 1
    unknown = events.up(f_cnt=3, data=b"\xff", dev_eui="00000000000000bb", tags={"codec": "vendor-x"})
    res = pipeline.handle("up", events.body(unknown), "json", "mqtt")
    assert res.outcome == "dead_letter" and "no codec named 'vendor-x'" in res.reason


def test_fport_zero_mac_only_uplink_is_counted_without_readings(pipeline, store, events):
    res = pipeline.handle("up", events.body(events.up(f_port=0, data=b"")), "json", "mqtt")
    assert res.outcome == "ignored" and store.dead_letters() == [] and store.event_count("up") == 1


@pytest.mark.parametrize("fport", [200, 201, 202])
def test_fuota_answers_on_the_app_layer_fports_are_counted_without_readings(pipeline, store, events, fport):
    """TS005/TS004/TS003 answers (McGroupSetupAns, FragSessionStatusAns, AppTimeReq) on the fPorts
    `citynode provision` gives those packages: the network server's business, not readings."""
    res = pipeline.handle("up", events.body(events.up(f_port=fport, data=b"\x02\x00")), "json", "mqtt")
    assert res.outcome == "ignored" and store.dead_letters() == [] and store.event_count("up") == 1


def test_a_crashing_codec_is_a_dead_letter_not_a_crash(store, events):
    def broken(fport, data):
        raise ZeroDivisionError("division by zero")

    pipeline = Pipeline(store, decoders={"citynode": broken})
    res = pipeline.handle("up", events.body(events.up(data=b"\x01")), "json", "mqtt")
    assert res.outcome == "dead_letter" and "internal codec error ZeroDivisionError" in res.reason
    assert store.event_count("up") == 1


def test_trusted_object_from_the_generated_chirpstack_codec_matches_our_decoding(
    tmp_path, events, aq_payload
):
    """ChirpStack runs codecs/chirpstack/citynode.js and puts its ``data`` into ``object``; trusting it
    must give the same readings as decoding ``data`` ourselves (run here in QuickJS)."""
    import quickjs

    from gateway.paths import codecs_dir
    from gateway.service.store import Store

    ctx = quickjs.Context()
    ctx.eval((codecs_dir() / "chirpstack" / "citynode.js").read_text(encoding="utf-8"))
    payload = aq_payload(18.25)
    out = json.loads(ctx.eval(f"JSON.stringify(decodeUplink({{fPort: 10, bytes: {list(payload)}}}))"))
    msg = events.up(data=payload)
    json_format.ParseDict(out["data"], msg.object)
    results = {}
    for trust in (False, True):
        with Store.open(tmp_path / f"{trust}.sqlite") as s:
            Pipeline(s, PipelineOptions(trust_object=trust)).handle("up", events.body(msg), "json", "mqtt")
            results[trust] = {(r.reading.field, r.reading.value, r.reading.unit) for r in s.readings()}
    assert results[True] == results[False] and len(results[True]) == 8
