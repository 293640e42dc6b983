# Readings that are measured but not yet sent: a bounded queue in flash (survives deep sleep and
# power cuts), newest last. Each entry is [time_s, reading]. When full, the oldest reading is dropped
# and `overflowed` is set so the next device_status reports queue_overflow.
from citynode import files

BACKLOG_PATH = "backlog.json"


class Backlog:
    def __init__(self, limit, path=BACKLOG_PATH):
        self.limit = limit
        self.path = path
        stored = files.read(path, None)
        if not isinstance(stored, dict):
            stored = {"entries": [], "overflowed": False}
        self.entries = [e for e in stored.get("entries", ()) if isinstance(e, list) and len(e) == 2]
        self.overflowed = bool(stored.get("overflowed"))

    def __len__(self):
        return len(self.entries)

    def _save(self):
        files.write(self.path, {"entries": self.entries, "overflowed": self.overflowed})

    def push(self, time_s, reading):
        # A clock that went backwards (power cut: the RTC restarts at its epoch) would give older
        # readings a future time: move the old entries so the newest sits just before time_s.
        if self.entries and self.entries[-1][0] > time_s:
            shift = self.entries[-1][0] - time_s + 1
            for entry in self.entries:
                entry[0] -= shift
        self.entries.append([time_s, reading])
        while len(self.entries) > self.limit:
            self.entries.pop(0)
            self.overflowed = True
        self._save()

    def newest_first(self):
        """Readings newest first, each with offset_s (seconds before the newest), for encode_batch."""
        if not self.entries:
            return []
        newest = self.entries[-1][0]
        out = []
        for i in range(len(self.entries) - 1, -1, -1):
            reading = dict(self.entries[i][1])
            reading["offset_s"] = newest - self.entries[i][0]
            out.append(reading)
        return out

    def sent(self, count):
        """The newest `count` readings went out: forget them."""
        if count:
            del self.entries[len(self.entries) - count :]
            self._save()

    def clear_overflow(self):
        if self.overflowed:
            self.overflowed = False
            self._save()
