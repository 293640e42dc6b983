"""Process counters and the Prometheus text exposition format (version 0.0.4).

Counters count what this process did since it started (events in per type and source, decoded,
dead-lettered, duplicates); gauges that must survive a restart (FCnt gaps, per-sink pending) are read
from the store when ``/metrics`` is scraped. Other modules (the sinks) register extra gauges through
:meth:`Metrics.add_collector`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

__all__ = ["Metrics", "Sample", "render"]

# (metric name, labels, value)
Sample = tuple[str, Mapping[str, str], float]

_HELP: dict[str, tuple[str, str]] = {
    "citynode_events_total": ("counter", "ChirpStack integration events received, by type and ingest."),
    "citynode_uplinks_decoded_total": ("counter", "Uplinks decoded into readings."),
    "citynode_readings_total": ("counter", "Readings stored."),
    "citynode_duplicates_total": ("counter", "Events dropped as already stored (same deduplication id)."),
    "citynode_dead_letters_total": (
        "counter",
        "Events or payloads kept in the dead-letter store, by source.",
    ),
    "citynode_fcnt_gaps": ("gauge", "Uplinks lost according to frame-counter gaps, all devices (stored)."),
    "citynode_fcnt_resets": ("gauge", "Frame-counter resets, all devices (stored)."),
    "citynode_devices": ("gauge", "Devices known to the store."),
    "citynode_stored_readings": ("gauge", "Readings in the store."),
    "citynode_stored_dead_letters": ("gauge", "Dead letters in the store."),
    "citynode_sink_pending": ("gauge", "Readings not yet delivered, per sink."),
    "citynode_sink_delivered_total": ("counter", "Readings delivered, per sink."),
    "citynode_sink_failed_total": ("counter", "Readings dead-lettered by a sink, per sink."),
    "citynode_sink_retries_total": ("counter", "Back-off waits before sending again, per sink."),
}


class Metrics:
    """Thread-safe labelled counters plus pluggable collectors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._collectors: list[Callable[[], Iterable[Sample]]] = []
        self._counter_sources: list[Callable[[], Iterable[Sample]]] = []

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += amount

    def value(self, name: str, **labels: str) -> float:
        """One counter's value (0 when never incremented); sums over labels not given."""
        with self._lock:
            return sum(
                v
                for (n, lbls), v in self._counters.items()
                if n == name and all(dict(lbls).get(k) == want for k, want in labels.items())
            )

    def add_collector(self, collect: Callable[[], Iterable[Sample]]) -> None:
        """Register a function called at every scrape that yields extra samples (gauges)."""
        self._collectors.append(collect)

    def add_counter_source(self, counters: Callable[[], Iterable[Sample]]) -> None:
        """Register counters kept elsewhere (another process): added to this one's at every scrape."""
        self._counter_sources.append(counters)

    def samples(self) -> list[Sample]:
        with self._lock:
            totals = dict(self._counters)
        for source in self._counter_sources:
            for name, labels, value in source():
                key = (name, tuple(sorted(labels.items())))
                totals[key] = totals.get(key, 0.0) + value
        out: list[Sample] = [(n, dict(lbls), v) for (n, lbls), v in totals.items()]
        for collect in self._collectors:
            out.extend(collect())
        return out

    def render(self) -> str:
        return render(self.samples())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(samples: Iterable[Sample]) -> str:
    """Samples in the Prometheus text format, grouped by metric with HELP and TYPE lines."""
    by_name: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_name[sample[0]].append(sample)
    for name in ("citynode_events_total", "citynode_dead_letters_total", "citynode_uplinks_decoded_total"):
        by_name.setdefault(name, [])
    lines: list[str] = []
    for name in sorted(by_name):
        kind, text = _HELP.get(name, ("gauge", name))
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for _, labels, value in sorted(by_name[name], key=lambda s: sorted(s[1].items())):
            label_text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
            number = repr(float(value)) if value != int(value) else str(int(value))
            lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return "\n".join(lines) + "\n"
