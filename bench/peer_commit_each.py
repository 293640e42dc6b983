"""A SCRIPT A TEAM MIGHT WRITE, NOT PART OF CITYNODE: a benchmark peer (bench/peers.py), commit per message.

ChirpStack uplinks (JSON `up` events from its MQTT integration) into SQLite with paho-mqtt, cbor2 and
sqlite3: decode the citynode CBOR payload, one row per reading, commit, and paho acknowledges (PUBACK)
when on_message returns, so what was acknowledged was committed.

What it does NOT guarantee (citynode's gateway does):
* no de-duplication: an event the broker delivers again (same deduplicationId) is stored twice;
* no dead letters: one malformed event (bad JSON, base64 or CBOR, an unknown fPort) raises in
  on_message, the script crashes, and with its clean session the broker drops what it had queued for it;
* no validation against the schema (ranges, types, versions), no batched readings, no FCnt health;
* no raw event (nothing to replay or audit), radio metadata of the first gateway only, no units;
* a clean session: what is published while it is down is never delivered to it.

Usage: python bench/peer_commit_each.py HOST PORT DB TOPIC
"""

import base64
import json
import sqlite3
import sys
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
    db.commit()


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="peer-commit-each")
client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
client.on_subscribe = lambda *_: print("subscribed", flush=True)
client.on_message = on_message
client.connect(host, port)
client.loop_forever()
