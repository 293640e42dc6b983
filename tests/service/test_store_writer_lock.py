"""Writers of one SQLite file take turns through ``<file>-writer.lock``.

Gateway instances splitting a shared subscription, or ``gateway prune`` beside a running gateway,
write the same file. SQLite alone makes a writer that finds the file locked sleep and retry; the lock
file hands the turn over as soon as the other writer commits, and nothing is lost either way.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from gateway.service.store import Store, UplinkRecord


def test_a_write_waits_while_another_writer_holds_the_lock_and_then_goes_ahead(tmp_path: Path, make_uplink):
    path = tmp_path / "gateway.sqlite"
    store = Store.open(path)
    other = os.open(f"{path}-writer.lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)  # another process in the middle of a write transaction
    writer = threading.Thread(target=store.record_uplink, args=(make_uplink(f_cnt=1), []))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive(), "the write did not wait for its turn"
    fcntl.flock(other, fcntl.LOCK_UN)
    writer.join(10)
    assert not writer.is_alive()
    assert store.device("0004a30b001c0530").uplinks == 1
    os.close(other)
    store.close()


def test_two_stores_writing_batches_at_once_keep_every_uplink(tmp_path: Path, make_uplink, make_reading):
    path = tmp_path / "gateway.sqlite"
    stores = [Store.open(path), Store.open(path)]
    errors: list[BaseException] = []

    def write(index: int, store: Store) -> None:
        try:
            for batch in range(20):
                records = []
                for n in range(25):
                    up = make_uplink(f_cnt=batch * 25 + n, dev_eui=f"0004a30b001c{index:04x}")
                    records.append(UplinkRecord(up, [make_reading(up)], raw=b"{}", encoding="json"))
                with store.batch():
                    assert all(store.record_uplinks(records))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [stores[0].device(f"0004a30b001c{i:04x}").uplinks for i in range(2)] == [500, 500]
    assert len(list(stores[1].readings())) == 1000
    for store in stores:
        store.close()


def test_an_in_memory_store_needs_no_lock_file(make_uplink):
    with Store.open(":memory:") as store:
        assert store.record_uplink(make_uplink(), [])


def test_a_writer_that_never_lets_go_makes_the_write_fail_not_hang(tmp_path: Path, make_uplink, monkeypatch):
    import gateway.service.store.lock as lock_module
    from gateway.service.store import StoreError

    path = tmp_path / "gateway.sqlite"
    store = Store.open(path)
    other = os.open(f"{path}-writer.lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    monkeypatch.setattr(lock_module, "WRITER_WAIT_S", 0.2)
    try:
        with pytest.raises(StoreError, match="another writer held .*writer.lock"):
            store.record_uplink(make_uplink(), [])
    finally:
        os.close(other)
    assert store.record_uplink(make_uplink(), [])  # the lock is free again: it goes through
    store.close()
