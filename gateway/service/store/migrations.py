"""The schema and its migrations, SQLite and PostgreSQL side by side.

Step N brings a store from version N-1 to N (SQLite records it in ``PRAGMA user_version``,
PostgreSQL in the ``citynode_schema`` table). Never edit a released step: append one. What is the
same on both engines is written once (:data:`_SHARED`, types as ``{BIGINT}`` ... filled in by
:meth:`gateway.service.store.dialect.Dialect.ddl`); where the engines differ, each has its own text
here, next to the other's.
"""

from __future__ import annotations

from gateway.service.store.dialect import POSTGRES, SQLITE, Dialect

__all__ = ["POSTGRES_MIGRATIONS", "READINGS_VIEW", "SCHEMA_VERSION", "SQLITE_MIGRATIONS", "migrations"]

# The reading log as the sinks, the API and exports read it: each reading with its uplink's columns.
READINGS_VIEW = """
    CREATE VIEW readings AS
        SELECT v.id AS id, v.event_id AS event_id, e.dev_eui AS dev_eui, e.device_name AS device_name,
               e.message_type AS message_type, v.time AS time, v.field AS field, v.value AS value,
               v.value_num AS value_num, v.unit AS unit, v.unit_code AS unit_code,
               e.dedup_id AS deduplication_id, e.f_cnt AS f_cnt, e.tags AS tags, e.rssi AS rssi,
               e.snr AS snr, e.gateway_id AS gateway_id, e.spreading_factor AS spreading_factor,
               e.frequency AS frequency, e.gateway_count AS gateway_count, e.received_at AS received_at
        FROM reading_log AS v JOIN events AS e ON e.id = v.event_id
"""

_V1 = """
    CREATE TABLE events (
        id          {EVENT_ID},
        kind        TEXT NOT NULL,               -- up, join, status, ack, txack, log
        dev_eui     TEXT,
        received_at TEXT NOT NULL,               -- format_time()
        dedup_id    TEXT,                        -- ChirpStack deduplicationId (downlinkId for txack)
        encoding    TEXT NOT NULL DEFAULT '',    -- json | protobuf
        raw         {BLOB},
        UNIQUE (kind, dedup_id)
    );
    CREATE INDEX events_device ON events (dev_eui, received_at);

    CREATE TABLE readings (
        id               {LOG_ID},
        event_id         {BIGINT} NOT NULL REFERENCES events (id),
        dev_eui          TEXT NOT NULL,
        device_name      TEXT NOT NULL,
        message_type     TEXT NOT NULL,
        time             TEXT NOT NULL,
        field            TEXT NOT NULL,
        value            TEXT NOT NULL,                      -- JSON: number, bool or string
        value_num        {REAL},                             -- numeric copy for SQL filters
        unit             TEXT,
        unit_code        TEXT,
        deduplication_id TEXT NOT NULL,
        f_cnt            {BIGINT} NOT NULL,
        tags             TEXT NOT NULL DEFAULT '{{}}',
        rssi             INTEGER,
        snr              {REAL},
        gateway_id       TEXT,
        spreading_factor INTEGER,
        frequency        {BIGINT},
        gateway_count    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX readings_device_field_time ON readings (dev_eui, field, time);
    CREATE INDEX readings_time ON readings (time);

    CREATE TABLE devices (
        dev_eui        TEXT PRIMARY KEY,
        name           TEXT NOT NULL DEFAULT '',
        application_id TEXT NOT NULL DEFAULT '',
        tags           TEXT NOT NULL DEFAULT '{{}}',
        role           TEXT,
        last_fcnt      {BIGINT},
        fcnt_gaps      {BIGINT} NOT NULL DEFAULT 0,
        resets         {BIGINT} NOT NULL DEFAULT 0,
        joins          {BIGINT} NOT NULL DEFAULT 0,
        uplinks        {BIGINT} NOT NULL DEFAULT 0,
        last_seen      TEXT,
        last_rssi      INTEGER,
        last_snr       {REAL},
        battery        {REAL},
        margin         INTEGER,
        last_event     TEXT
    );

    CREATE TABLE dead_letters (
        id          {LOG_ID},
        received_at TEXT NOT NULL,
        source      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        raw         {BLOB},
        raw_is_text INTEGER NOT NULL DEFAULT 0,
        dev_eui     TEXT
    );

    CREATE TABLE sink_cursors (
        sink       TEXT PRIMARY KEY,
        reading_id {BIGINT} NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL
    );
"""

# 2: the reading log's time index goes. Every query by time also names the device (the API's
# device + field + since, the status page) and uses readings_device_field_time; a time-only
# query (an export with --since) pages through the log by id. Keeping it cost about a fifth of
# the store's CPU per uplink (bench/RESULTS.md, gateway throughput).
_V2 = """
    DROP INDEX readings_time;
"""

# 3: narrow reading log. What every reading of an uplink repeated (device name, message type,
# deduplication id, FCnt, tags, radio metadata) moves to the uplink's event row; the log keeps
# what differs per reading. ``readings`` becomes a view with the old columns, so every query and
# the ids (the sinks' outbox positions) stay as they were. About a third less disk per uplink and
# half the values to bind per reading.
# Indexes: the log's (device, field, time) index took 6.4 inserts at random places per uplink,
# nearly half the cost of storing one; it goes. Queries by device now start from the events'
# (device, message type, receive time) index (one entry per uplink, replacing the unused
# (device, time) one) and reach the readings through the log's event index, which only ever
# grows at its end. (A reading's time is its uplink's receive time or earlier.)
_V3_HEAD = """
    ALTER TABLE events ADD COLUMN device_name TEXT;
    ALTER TABLE events ADD COLUMN message_type TEXT;
    ALTER TABLE events ADD COLUMN f_cnt {BIGINT};
    ALTER TABLE events ADD COLUMN tags TEXT;
    ALTER TABLE events ADD COLUMN rssi INTEGER;
    ALTER TABLE events ADD COLUMN snr {REAL};
    ALTER TABLE events ADD COLUMN gateway_id TEXT;
    ALTER TABLE events ADD COLUMN spreading_factor INTEGER;
    ALTER TABLE events ADD COLUMN frequency {BIGINT};
    ALTER TABLE events ADD COLUMN gateway_count INTEGER;
    CREATE TABLE reading_log (
        id         {LOG_ID},
        event_id   {BIGINT} NOT NULL REFERENCES events (id),
        time       TEXT NOT NULL,
        field      TEXT NOT NULL,
        value      TEXT NOT NULL,                       -- JSON: number, bool or string
        value_num  {REAL},                              -- numeric copy for SQL filters
        unit       TEXT,
        unit_code  TEXT
    );
"""
# Each uplink's columns come from its first reading; the log keeps the ids (the sinks' cursors).
_V3_COPY_SQLITE = """
    -- for the copy below only (one lookup per event), dropped with the old table
    CREATE INDEX readings_by_event ON readings (event_id, id);
    UPDATE events SET (device_name, message_type, f_cnt, tags, rssi, snr, gateway_id, spreading_factor,
                       frequency, gateway_count) =
        (SELECT r.device_name, r.message_type, r.f_cnt, r.tags, r.rssi, r.snr, r.gateway_id,
                r.spreading_factor, r.frequency, r.gateway_count
         FROM readings AS r WHERE r.event_id = events.id ORDER BY r.id LIMIT 1)
        WHERE id IN (SELECT event_id FROM readings);
    INSERT INTO reading_log (id, event_id, time, field, value, value_num, unit, unit_code)
        SELECT id, event_id, time, field, value, value_num, unit, unit_code FROM readings ORDER BY id;
    DELETE FROM sqlite_sequence WHERE name = 'reading_log';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'reading_log', seq FROM sqlite_sequence WHERE name = 'readings';
"""
_V3_COPY_POSTGRES = """
    UPDATE events SET (device_name, message_type, f_cnt, tags, rssi, snr, gateway_id, spreading_factor,
                       frequency, gateway_count) =
        (r.device_name, r.message_type, r.f_cnt, r.tags, r.rssi, r.snr, r.gateway_id, r.spreading_factor,
         r.frequency, r.gateway_count)
        FROM (SELECT DISTINCT ON (event_id) * FROM readings ORDER BY event_id, id) AS r
        WHERE events.id = r.event_id;
    INSERT INTO reading_log (id, event_id, time, field, value, value_num, unit, unit_code)
        SELECT id, event_id, time, field, value, value_num, unit, unit_code FROM readings ORDER BY id;
    SELECT setval(pg_get_serial_sequence('reading_log', 'id'), last_value, is_called) FROM readings_id_seq;
"""
_V3_TAIL = f"""
    DROP TABLE readings;
    CREATE INDEX reading_log_event ON reading_log (event_id);
    DROP INDEX events_device;
    CREATE INDEX events_device_type ON events (dev_eui, message_type, received_at);
    {READINGS_VIEW.replace("{", "{{").replace("}", "}}")};
"""


# 4: the read API pages a device's readings in log order by walking its events in id order
# (``events_device_id``) and each event's readings in id order (``reading_log_event``): reading ids
# grow with event ids (an uplink's readings are written after it, writers one at a time), so the
# pages need no sort of the device's history (queries.readings). One index entry per uplink.
_V4 = """
    CREATE INDEX events_device_id ON events (dev_eui, id);
"""
# SQLite's index on (event_id) already holds the rowid (the reading id) in order; PostgreSQL's
# must name it.
_V4_POSTGRES = """
    DROP INDEX reading_log_event;
    CREATE INDEX reading_log_event ON reading_log (event_id, id);
"""


# 5: less disk per uplink (bench/RESULTS.md, store_disk): about 4 KB -> under 0.8 KB per JSON uplink.
# * Raw events are stored compressed against a preset dictionary (gateway.service.store.rawcodec):
#   the dictionaries live in ``raw_dictionaries``, never changed or deleted; an event's ``encoding``
#   names the one it was compressed with (``json+z2``); rows written before stay as they were.
# * A reading's ``time`` is NULL when it is its uplink's receive time (nearly always): the view reads
#   it back as that time.
# * ``value_num`` (a REAL copy of every numeric value) is computed by the view instead of stored.
# * ``events_device_type`` indexes (device, message type, event id) instead of (..., receive time):
#   the live view's history takes a device's newest uplinks of a type in the order they were stored.
# ``readings`` keeps its columns; ids (the sinks' cursors) and every other table stay as they were.
_V5_HEAD = """
    CREATE TABLE raw_dictionaries (
        id          {EVENT_ID},
        encoding    TEXT NOT NULL,       -- of the events it compresses: json | protobuf
        origin      TEXT NOT NULL,       -- seed (shipped with the gateway) | store (made from its own events)
        created_at  TEXT NOT NULL,
        dictionary  {BLOB} NOT NULL
    );
    DROP VIEW readings;
    DROP INDEX events_device_type;
    CREATE INDEX events_device_type ON events (dev_eui, message_type, id);
"""
# SQLite cannot drop NOT NULL or a column in place: the log is copied (same ids, same sequence).
_V5_LOG_SQLITE = """
    CREATE TABLE reading_log_5 (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id   INTEGER NOT NULL REFERENCES events (id),
        time       TEXT,                                -- NULL: the uplink's receive time
        field      TEXT NOT NULL,
        value      TEXT NOT NULL,                       -- JSON: number, bool or string
        unit       TEXT,
        unit_code  TEXT
    );
    INSERT INTO reading_log_5 (id, event_id, time, field, value, unit, unit_code)
        SELECT v.id, v.event_id, CASE WHEN v.time = e.received_at THEN NULL ELSE v.time END, v.field, v.value,
               v.unit, v.unit_code
        FROM reading_log AS v JOIN events AS e ON e.id = v.event_id ORDER BY v.id;
    UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'reading_log'), 0))
        WHERE name = 'reading_log_5';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'reading_log_5', seq FROM sqlite_sequence
        WHERE name = 'reading_log' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'reading_log_5');
    DROP TABLE reading_log;
    ALTER TABLE reading_log_5 RENAME TO reading_log;
    CREATE INDEX reading_log_event ON reading_log (event_id);
"""
_V5_LOG_POSTGRES = """
    ALTER TABLE reading_log ALTER COLUMN time DROP NOT NULL;
    UPDATE reading_log AS v SET time = NULL FROM events AS e WHERE e.id = v.event_id AND v.time = e.received_at;
    ALTER TABLE reading_log DROP COLUMN value_num;
"""
# The readings view of schema 5: the columns of schema 3's. ``value_num``: a JSON number starts with
# a digit or a minus sign (strings with a quote, booleans with t/f).
READINGS_VIEW_5 = """
    CREATE VIEW readings AS
        SELECT v.id AS id, v.event_id AS event_id, e.dev_eui AS dev_eui, e.device_name AS device_name,
               e.message_type AS message_type, COALESCE(v.time, e.received_at) AS time, v.field AS field,
               v.value AS value, {VALUE_NUM} AS value_num, v.unit AS unit, v.unit_code AS unit_code,
               e.dedup_id AS deduplication_id, e.f_cnt AS f_cnt, e.tags AS tags, e.rssi AS rssi,
               e.snr AS snr, e.gateway_id AS gateway_id, e.spreading_factor AS spreading_factor,
               e.frequency AS frequency, e.gateway_count AS gateway_count, e.received_at AS received_at
        FROM reading_log AS v JOIN events AS e ON e.id = v.event_id
"""



# 6: message shapes, so that a device's readings of one field are found without walking its history.
# An uplink's *shape* is its message type with the set of field names its readings carry
# (``air_quality`` with or without ``battery``, ``device_status``, ...); a store holds a handful per
# role. ``shapes`` numbers them (``fields``: the names as a JSON array, sorted by code point),
# ``shape_fields`` lists which shapes carry a field, and each uplink's event row names its shape
# (NULL: not an uplink, or an uplink without a message type). The index ``events_device_shape``
# (device, shape, event id) replaces ``events_device_type``: a message type is a set of shapes, so
# the live view still reads a type's newest uplinks along it, and ``field=`` pages read only the
# uplinks whose shape carries the field (queries.readings). One index entry per uplink, as before,
# with a small integer where the type's name was.
_V6_HEAD = """
    CREATE TABLE shapes (
        id           {EVENT_ID},
        message_type TEXT NOT NULL,
        fields       TEXT NOT NULL,      -- JSON array of the field names, sorted by code point
        UNIQUE (message_type, fields)
    );
    CREATE TABLE shape_fields (
        field  TEXT NOT NULL,
        shape  {BIGINT} NOT NULL REFERENCES shapes (id),
        PRIMARY KEY (field, shape)
    ){WITHOUT_ROWID};
    ALTER TABLE events ADD COLUMN shape {BIGINT};
"""
# Each stored uplink's shape, from its readings (one lookup of the event index per uplink).
_V6_FILL_SQLITE = """
    CREATE TEMP TABLE shape_keys (event_id INTEGER PRIMARY KEY, message_type TEXT NOT NULL, fields TEXT NOT NULL);
    INSERT INTO shape_keys (event_id, message_type, fields)
        SELECT e.id, e.message_type,
               (SELECT json_group_array(f) FROM (SELECT DISTINCT field AS f FROM reading_log
                                                 WHERE event_id = e.id ORDER BY field))
        FROM events AS e WHERE e.kind = 'up' AND e.message_type IS NOT NULL;
    INSERT INTO shapes (message_type, fields) SELECT DISTINCT message_type, fields FROM shape_keys ORDER BY 1, 2;
    INSERT INTO shape_fields (field, shape) SELECT DISTINCT j.value, s.id FROM shapes AS s, json_each(s.fields) AS j;
    UPDATE events SET shape = (SELECT s.id FROM shape_keys AS k JOIN shapes AS s
                               ON s.message_type = k.message_type AND s.fields = k.fields WHERE k.event_id = events.id)
        WHERE id IN (SELECT event_id FROM shape_keys);
    DROP TABLE shape_keys;
"""
# PostgreSQL keeps every updated row's old version until VACUUM; ``devices`` is rewritten once per
# batch (each device's counters), so the table grew by a row version per device per batch (~0.17 KB
# per uplink in bench/store_disk.py's run). With half of each page left free, an update finds room
# on its own page and prunes the dead versions there (a HOT update): the table stays about twice its
# live size. (Pages written before keep their layout until rewritten.)
_V6_FILL_POSTGRES = """
    ALTER TABLE devices SET (fillfactor = 50);
    CREATE TEMP TABLE shape_keys ON COMMIT DROP AS
        SELECT e.id AS event_id, e.message_type AS message_type,
               COALESCE((SELECT '[' || string_agg(to_json(x.f)::text, ',' ORDER BY x.f COLLATE "C") || ']'
                         FROM (SELECT DISTINCT field AS f FROM reading_log WHERE event_id = e.id) AS x), '[]') AS fields
        FROM events AS e WHERE e.kind = 'up' AND e.message_type IS NOT NULL;
    INSERT INTO shapes (message_type, fields) SELECT DISTINCT message_type, fields FROM shape_keys ORDER BY 1, 2;
    INSERT INTO shape_fields (field, shape)
        SELECT DISTINCT j.value, s.id FROM shapes AS s, json_array_elements_text(s.fields::json) AS j(value);
    UPDATE events SET shape = s.id FROM shape_keys AS k JOIN shapes AS s
        ON s.message_type = k.message_type AND s.fields = k.fields WHERE k.event_id = events.id;
"""
_V6_TAIL = """
    DROP INDEX events_device_type;
    CREATE INDEX events_device_shape ON events (dev_eui, shape, id);
"""


def _steps(dialect: Dialect, v3_copy: str, v4_own: str, v5_log: str, v6_fill: str) -> tuple[str, ...]:
    return tuple(
        dialect.ddl(step)
        for step in (
            _V1,
            _V2,
            _V3_HEAD + v3_copy.replace("{", "{{").replace("}", "}}") + _V3_TAIL,
            _V4 + v4_own,
            _V5_HEAD + v5_log + READINGS_VIEW_5 + ";",
            _V6_HEAD + v6_fill + _V6_TAIL,
        )
    )


SQLITE_MIGRATIONS: tuple[str, ...] = _steps(SQLITE, _V3_COPY_SQLITE, "", _V5_LOG_SQLITE, _V6_FILL_SQLITE)
POSTGRES_MIGRATIONS: tuple[str, ...] = _steps(
    POSTGRES, _V3_COPY_POSTGRES, _V4_POSTGRES, _V5_LOG_POSTGRES, _V6_FILL_POSTGRES
)
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)
assert len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION, "PostgreSQL and SQLite schemas move together"


def migrations(dialect: Dialect) -> tuple[str, ...]:
    """The migration steps of ``dialect``'s engine; step N is ``migrations(d)[N - 1]``."""
    return SQLITE_MIGRATIONS if dialect is SQLITE else POSTGRES_MIGRATIONS


def statements(step: str) -> list[str]:
    """A step's statements, one by one (drivers run one statement per call)."""
    return [s for s in step.split(";") if s.strip()]
