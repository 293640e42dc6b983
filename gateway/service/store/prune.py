"""Pruning: old readings and events go once every sink has delivered them; devices and cursors stay."""

from __future__ import annotations

from datetime import datetime

from gateway.service.store.backend import Backend
from gateway.service.store.rows import chunks
from gateway.service.store.values import PruneResult, format_time

__all__ = ["WINDOW", "prune"]

WINDOW = 20_000  # ids per prune transaction: short enough not to stall a running gateway
# A reading older than the cutoff: its own time, or (NULL) its uplink's receive time.
_OLD = (
    "(time < ? OR (time IS NULL AND EXISTS "
    "(SELECT 1 FROM events AS e WHERE e.id = reading_log.event_id AND e.received_at < ?)))"
)


def prune(
    db: Backend,
    before: datetime,
    delivered_up_to: int,
    *,
    dead_letters: bool = False,
    dry_run: bool = False,
    window: int = WINDOW,
) -> PruneResult:
    """See :meth:`gateway.service.store.Store.prune`. Raises the driver's error."""
    sql = db.dialect.sql
    cutoff = format_time(before)
    first, last = db.query("SELECT COALESCE(MIN(id), 1), COALESCE(MAX(id), 0) FROM reading_log")[0]
    readings = 0
    lo = int(first)
    top = min(int(last), delivered_up_to)
    while lo <= top:
        hi = min(lo + window - 1, top)
        where = f"FROM reading_log WHERE id >= ? AND id <= ? AND {_OLD}"
        if dry_run:
            readings += int(db.query(sql(f"SELECT COUNT(*) {where}"), (lo, hi, cutoff, cutoff))[0][0])
        else:
            with db.tx() as cur:
                readings += max(cur.execute(sql(f"DELETE {where}"), (lo, hi, cutoff, cutoff)).rowcount, 0)
        lo = hi + 1
    kept = int(
        db.query(sql(f"SELECT COUNT(*) FROM reading_log WHERE id > ? AND {_OLD}"), (delivered_up_to, cutoff, cutoff))[0][0]
    )
    # Events that still have readings: the undelivered ones. (A delivered reading that stays is newer
    # than the cutoff, and so is its event: a reading's time is its uplink's receive time or earlier.)
    held = {
        int(r[0]) for r in db.query(sql("SELECT DISTINCT event_id FROM reading_log WHERE id > ?"), (delivered_up_to,))
    }
    first, last = db.query("SELECT COALESCE(MIN(id), 1), COALESCE(MAX(id), 0) FROM events")[0]
    events = 0
    lo = int(first)
    while lo <= int(last):
        hi = lo + window - 1
        ids = [
            int(r[0])
            for r in db.query(sql("SELECT id FROM events WHERE id >= ? AND id <= ? AND received_at < ?"), (lo, hi, cutoff))
            if int(r[0]) not in held
        ]
        if ids and not dry_run:
            with db.tx() as cur:
                for chunk in chunks(ids, 500):
                    marks = ", ".join("?" * len(chunk))
                    cur.execute(sql(f"DELETE FROM events WHERE id IN ({marks})"), list(chunk))
        events += len(ids)
        lo = hi + 1
    letters = 0
    if dead_letters:
        where = "FROM dead_letters WHERE received_at < ?"
        if dry_run:
            letters = int(db.query(sql(f"SELECT COUNT(*) {where}"), (cutoff,))[0][0])
        else:
            with db.tx() as cur:
                letters = max(cur.execute(sql(f"DELETE {where}"), (cutoff,)).rowcount, 0)
    return PruneResult(readings=readings, events=events, dead_letters=letters, kept_undelivered=kept)
