"""Metrics in the Prometheus text exposition format (version 0.0.4), kept by hand: a counter
is a dict increment, a histogram a bisect and two additions, so the hot path pays well under
a microsecond per request (prometheus-client's labelled children take a lock and a lookup of
their own per update; `bench/` measures both).  Pure: no IO, no clock.

Label values are bounded by the caller (a method or tool the server does not know is counted
as "other"), so a client cannot grow the series without end.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

Labels = tuple[str, ...]
# Seconds: from a fast in-memory call to a slow one that waits on the store.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _series(name: str, names: Labels, values: Labels, extra: str = "") -> str:
    pairs = [f'{label}="{_escape(value)}"' for label, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return f"{name}{{{','.join(pairs)}}}" if pairs else name


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class Counter:
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Labels = ()) -> None:
        self.name, self.help, self.labels = name, help_text, labels
        # A counter without labels is shown from the start, at 0.
        self.values: dict[Labels, float] = {} if labels else {(): 0.0}

    def inc(self, *labels: str) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + 1.0

    def totals(self) -> dict[Labels, float]:
        return self.values

    def lines(self) -> Iterator[str]:
        for labels, value in sorted(self.totals().items()):
            yield f"{_series(self.name, self.labels, labels)} {_number(value)}"


class Gauge:
    """A value read when the metrics are: what is open now."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def lines(self) -> Iterator[str]:
        yield f"{self.name} {_number(self.read())}"


class Histogram:
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Labels = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.help, self.labels, self.buckets = name, help_text, labels, buckets
        # Per series: a count per bucket (the last for above every bound), then sum, count.
        self.values: dict[Labels, list[float]] = {}

    def observe(self, seconds: float, *labels: str) -> None:
        counts = self.values.get(labels)
        if counts is None:
            counts = self.values[labels] = [0.0] * (len(self.buckets) + 3)
        counts[bisect_left(self.buckets, seconds)] += 1
        counts[-2] += seconds
        counts[-1] += 1

    def series(self) -> dict[Labels, list[float]]:
        return self.values

    def lines(self) -> Iterator[str]:
        for labels, counts in sorted(self.series().items()):
            running, bucket = 0.0, self.name + "_bucket"
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=False):
                running += count
                le = 'le="+Inf"' if bound == float("inf") else f'le="{bound}"'
                yield f"{_series(bucket, self.labels, labels, le)} {_number(running)}"
            yield f"{_series(self.name + '_sum', self.labels, labels)} {counts[-2]!r}"
            yield f"{_series(self.name + '_count', self.labels, labels)} {_number(counts[-1])}"


class Timings:
    """Durations by a full set of labels, shown as two metrics: how many there were by every
    label (`counts`), and a histogram by the first few (`histogram`).  One record a label set
    instead of a counter and a histogram each halves what an update costs; the two are
    added up when the metrics are read.  Label values may be any value `str()` shows."""

    def __init__(self, labels: Labels, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.labels, self.buckets = labels, buckets
        self.values: dict[tuple[object, ...], list[float]] = {}

    def observe(self, seconds: float, labels: tuple[object, ...]) -> None:
        counts = self.values.get(labels)
        if counts is None:
            counts = self.values[labels] = [0.0] * (len(self.buckets) + 3)
        counts[bisect_left(self.buckets, seconds)] += 1
        counts[-2] += seconds
        counts[-1] += 1

    def counts(self, name: str, help_text: str) -> Counter:
        return _CountsOf(name, help_text, self)

    def histogram(self, name: str, help_text: str, labels: int) -> Histogram:
        return _HistogramOf(name, help_text, self, labels)

    def merged(self, kept: int) -> dict[Labels, list[float]]:
        """The records with only their first `kept` labels, those alike added up."""
        merged: dict[Labels, list[float]] = {}
        for labels, counts in self.values.items():
            key = tuple(str(label) for label in labels[:kept])
            into = merged.setdefault(key, [0.0] * len(counts))
            for index, count in enumerate(counts):
                into[index] += count
        return merged


class _CountsOf(Counter):
    def __init__(self, name: str, help_text: str, timings: Timings) -> None:
        super().__init__(name, help_text, timings.labels)
        self.timings = timings

    def totals(self) -> dict[Labels, float]:
        return {
            labels: counts[-1] for labels, counts in self.timings.merged(len(self.labels)).items()
        }


class _HistogramOf(Histogram):
    def __init__(self, name: str, help_text: str, timings: Timings, kept: int) -> None:
        super().__init__(name, help_text, timings.labels[:kept], timings.buckets)
        self.timings, self.kept = timings, kept

    def series(self) -> dict[Labels, list[float]]:
        return self.timings.merged(self.kept)


Metric = Counter | Gauge | Histogram


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def add(self, metric: Metric) -> Metric:
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self.metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.lines())
        return ("\n".join(lines) + "\n").encode()
