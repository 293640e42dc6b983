"""A SCRIPT A TEAM MIGHT WRITE, NOT PART OF CITYNODE: a benchmark peer (bench/peers.py), group commit.

ChirpStack uplinks (JSON `up` events from its MQTT integration) into SQLite with paho-mqtt, cbor2 and
sqlite3, the fast way: decode the citynode CBOR payload, one row per reading, commit every 100 messages
(or after 0.1 s without one), and only then acknowledge them (paho manual ack, a persistent session),
so what was acknowledged was committed and the broker redelivers the rest after a crash.

What it does NOT guarantee (citynode's gateway does):
* no de-duplication: an event redelivered after a crash or a reconnect (same deduplicationId) is
  stored twice;
* no dead letters: one malformed event (bad JSON, base64 or CBOR, an unknown fPort) raises, the script
  crashes; restarted, the broker redelivers that event first and it crashes again: the stream stops
  until someone removes the message by hand;
* no validation against the schema (ranges, types, versions), no batched readings, no FCnt health;
* no raw event (nothing to replay or audit), radio metadata of the first gateway only, no units.

Usage: python bench/peer_group_commit.py HOST PORT DB TOPIC
"""

import base64
import json
import sqlite3
import sys
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt

host, port, db_path, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "codecs" / "schema.json").read_text())
FIELDS = {m["fport"]: m["versions"]["1"] for m in SCHEMA["messages"].values()}

db = sqlite3.connect(db_path)
db.execute("PRAGMA journal_mode=WAL")
db.execute(
    "CREATE TABLE IF NOT EXISTS readings (dev_eui TEXT, time TEXT, f_cnt INTEGER, rssi INTEGER, snr REAL, "
    "field TEXT, value)"
)
db.execute("CREATE INDEX IF NOT EXISTS readings_device_time ON readings (dev_eui, time)")
pending = []  # message ids inserted, not yet committed nor acknowledged


def readings(f_port, data):
    for spec, value in zip(FIELDS[f_port], cbor2.loads(data)[1:]):  # [header, value, value, ...]
        if spec["type"] == "number" and value is not None:
            value = value / 10 ** spec.get("decimals", 0) + spec.get("offset", 0)
        elif isinstance(value, list):
            value = json.dumps(value)
        yield spec["name"], value


def on_message(client, userdata, msg):
    event = json.loads(msg.payload)
    rx = event.get("rxInfo", [{}])[0]
    row = (event["deviceInfo"]["devEui"], event["time"], event.get("fCnt", 0), rx.get("rssi"), rx.get("snr"))
    data = base64.b64decode(event["data"])
    rows = [row + reading for reading in readings(event["fPort"], data)]
    db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    pending.append(msg.mid)


client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2, client_id="peer-group-commit", clean_session=False, manual_ack=True
)
client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
client.on_subscribe = lambda *_: print("subscribed", flush=True)
client.on_message = on_message
client.connect(host, port)
last_commit = time.monotonic()
while True:
    if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
        client.reconnect()
    if len(pending) >= 100 or (pending and time.monotonic() - last_commit > 0.1):
        db.commit()
        for mid in pending:
            client.ack(mid, 1)
        pending.clear()
        last_commit = time.monotonic()
