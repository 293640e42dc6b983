"""The SQLite store's files: private to the operator, and a failed COMMIT reported as itself."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.service.store import Store


def test_the_store_file_its_wal_and_its_lock_file_are_created_mode_0600(tmp_path: Path, make_uplink) -> None:
    path = tmp_path / "gateway.sqlite"
    old = os.umask(0o022)  # the usual umask would leave 0644
    try:
        with Store.open(path) as store:
            assert store.record_uplink(make_uplink(), [])
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-writer.lock")]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    finally:
        os.umask(old)
    assert modes == {p.name: 0o600 for p in files}


# A child process whose file size limit is hit while COMMIT writes the batch to the WAL (the
# pages stay in the page cache until then): SQLite fails the COMMIT and rolls back by itself.
_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys, os
    from datetime import UTC, datetime
    from gateway.contract.records import RadioMeta, Reading, Uplink
    from gateway.service.store import Store, StoreError, UplinkRecord

    def uplink(n):
        return Uplink("0004a30b001c0530", "node", "app", 10, n, b"", datetime(2026, 5, 4, tzinfo=UTC),
                      f"dedup-{n}", {}, RadioMeta(-80, 7.0, "0016c001ff10a235", 7, 868100000, 1))

    path = sys.argv[1]
    store = Store.open(path)
    store.record_uplink(uplink(1), [])
    size = max(os.path.getsize(path), os.path.getsize(path + "-wal"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300_000, resource.RLIM_INFINITY))
    records = []
    for n in range(2, 5000):
        up = uplink(n)
        readings = [Reading(up.dev_eui, "node", "air_quality", up.received_at, f"f{k}", float(k), None, None,
                            up.deduplication_id, n, {}) for k in range(6)]
        records.append(UplinkRecord(up, readings, raw=b"x" * 200))
    try:
        with store.batch():
            store.record_uplinks(records)
    except StoreError as exc:
        print("StoreError:", exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("uplinks after:", store.event_count("up"))
    print("stored again:", store.record_uplink(uplink(2), []))
    """
)


def test_a_failed_commit_reports_its_own_error_not_the_rollback_after_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path / "gateway.sqlite")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("StoreError: cannot commit a batch to"), result.stdout
    assert "cannot rollback" not in result.stdout
    assert lines[0].endswith(("database or disk is full", "disk I/O error")), result.stdout
    assert lines[1:] == ["uplinks after: 1", "stored again: True"]  # nothing half-written; usable again
