"""The plugin's own metrics: a small thread-safe registry of counters and gauges, and their Prometheus names.

Orthanc-free. A ``Counter`` only goes up (``add`` takes a tiny lock for the addition only, never
across I/O); a gauge is a function read when the metrics are published. Every metric has a name
starting with ``orthanc_objstore_`` and optional labels; ``Metrics.samples()`` gives
``(exposed name, value)`` pairs, where the exposed name carries the labels in Prometheus' syntax
(``orthanc_objstore_operations_total{operation="read",storage="object-storage"}``): Orthanc's
``SetMetricsValue`` stores names verbatim and prints them as they are in
``/tools/metrics-prometheus``. ``flat_name`` gives the label-free spelling for a consumer that wants
plain names. ``Publisher`` pushes the samples to Orthanc every few seconds from a daemon thread.
"""

import logging
import re
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

PREFIX = "orthanc_objstore_"
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_LABEL_VALUE = re.compile(r"[a-zA-Z0-9_.-]*\Z")


def exposed_name(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """``name{label="value",...}``, Prometheus' exposition syntax (labels in the order given)."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels) + "}"


def flat_name(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """The label values folded into the name: ``orthanc_objstore_read_object_storage_operations_total``."""
    base, total = (name[:-6], "_total") if name.endswith("_total") else (name, "")
    stem = base[len(PREFIX):] if base.startswith(PREFIX) else base
    parts = [value.replace("-", "_").replace(".", "_") for _, value in labels]
    return PREFIX + "_".join(parts + [stem]) + total


class Counter:
    """A value that only goes up. ``add`` is safe from any thread and holds its lock for the addition only."""

    __slots__ = ("_value", "_lock")

    def __init__(self):
        self._value = 0
        self._lock = threading.Lock()

    def add(self, amount: int = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up (asked to add {amount})")
        with self._lock:
            self._value += amount

    @property
    def value(self) -> int:
        return self._value


class Metrics:
    """Counters and gauges by (name, labels). ``counter()`` returns the same object for the same key,
    so callers look their counters up once and keep them (the hot path never touches the registry)."""

    def __init__(self):
        self._counters: dict[tuple, Counter] = {}
        self._gauges: dict[tuple, Callable[[], float]] = {}
        self._help: dict[str, str] = {}
        self._lock = threading.Lock()

    def counter(self, name: str, help_text: str = "", **labels: str) -> Counter:
        key = self._key(name, labels, help_text)
        with self._lock:
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = Counter()
            return counter

    def gauge(self, name: str, read: Callable[[], float], help_text: str = "", **labels: str) -> None:
        """Registers ``read()``, called at each publication (it must be cheap and never block)."""
        key = self._key(name, labels, help_text)
        with self._lock:
            self._gauges[key] = read

    def samples(self, names: Callable[[str, tuple], str] = exposed_name) -> list[tuple[str, float]]:
        """Every metric's current value, sorted by name; a gauge that fails to read is left out."""
        with self._lock:
            counters = list(self._counters.items())
            gauges = list(self._gauges.items())
        result: list[tuple[str, float]] = [(names(*key), counter.value) for key, counter in counters]
        for key, read in gauges:
            try:
                result.append((names(*key), read()))
            except Exception:  # noqa: BLE001 - one broken gauge must not stop the others
                log.debug("gauge %s could not be read", key[0], exc_info=True)
        return sorted(result)

    def value(self, name: str, **labels: str) -> float:
        """One metric's current value (tests, tools); KeyError when it does not exist."""
        wanted = exposed_name(name, tuple(sorted(labels.items())))
        for sample_name, sample_value in self.samples():
            if sample_name == wanted:
                return sample_value
        raise KeyError(wanted)

    def prometheus_text(self) -> str:
        """The Prometheus text format, with ``# HELP`` and ``# TYPE`` lines (what Orthanc's own page lacks)."""
        by_name: dict[str, list[tuple[str, float]]] = {}
        kinds = {}
        with self._lock:
            keys = [(key, "counter") for key in self._counters] + [(key, "gauge") for key in self._gauges]
        for key, kind in keys:
            kinds[key[0]] = kind
        for sample_name, sample_value in self.samples():
            by_name.setdefault(sample_name.split("{", 1)[0], []).append((sample_name, sample_value))
        lines = []
        for name in sorted(by_name):
            if self._help.get(name):
                lines.append(f"# HELP {name} {self._help[name]}")
            lines.append(f"# TYPE {name} {kinds.get(name, 'untyped')}")
            lines += [f"{sample_name} {_format(sample_value)}" for sample_name, sample_value in by_name[name]]
        return "\n".join(lines) + "\n"

    def _key(self, name: str, labels: dict, help_text: str) -> tuple:
        if not name.startswith(PREFIX) or not _NAME.match(name):
            raise ValueError(f"metric name {name!r}: must start with {PREFIX!r} and use only letters, digits, _")
        for label, value in labels.items():
            if not _NAME.match(label) or not _LABEL_VALUE.match(value):
                raise ValueError(f"metric {name!r}: label {label}={value!r} must be a name and a plain value "
                                 "(letters, digits, '_', '-', '.')")
        if help_text:
            self._help.setdefault(name, help_text)
        return name, tuple(sorted(labels.items()))


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Publisher:
    """Calls ``publish(name, value)`` for every sample every ``interval`` seconds, from a daemon thread.

    ``publish`` is the glue's wrapper of ``orthanc.SetMetricsValue``: the thread starts once Orthanc
    has started (Orthanc refuses metrics during the plugin's initialisation) and ``stop`` ends it
    (ORTHANC_STOPPED).
    """

    def __init__(self, metrics: Metrics, publish: Callable[[str, float], None], interval: float = 5.0):
        self.metrics = metrics
        self.publish = publish
        self.interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="objstore-metrics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def publish_once(self) -> None:
        for name, value in self.metrics.samples():
            self.publish(name, value)

    def _run(self):
        while True:
            try:
                self.publish_once()
            except Exception:  # noqa: BLE001 - metrics must never take the plugin down
                log.warning("could not publish the metrics", exc_info=True)
            if self._stopping.wait(self.interval):
                return
