"""Coverage: which of the backend's behaviours a run exercised, counted against the catalogue.

:class:`CoverageCounter` is fed what already flows (the engine's status changes, each RPC's
method and status code, stream endings, build log follows, fault firings) and does nothing but
count: no I/O, no clock. The hot path (one status change) is one tuple and one dict update; the
meaning (trigger, condition) is worked out only when a :class:`CoverageReport` is made.

A report holds every item of :mod:`simulator.core.coverage_catalogue` with its count (0 when never
seen) plus whatever was seen outside the catalogue (flagged ``expected: false``). Reports merge by
adding counts, and read and write the stable JSON format the README documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.core import coverage_catalogue as cat
from simulator.core.model import StatusChange
from simulator.core.transitions import Phase

__all__ = ["FORMAT", "CoverageCounter", "CoverageReport", "GroupTotal"]

FORMAT = "gitpod-sim-coverage/1"

_ChangeKey = tuple[int, int, str]
"""(previous phase's value or -1 for a start, phase's value, cause)."""


class CoverageCounter:
    """Counts what happened; pure and cheap (see the module docstring)."""

    __slots__ = (
        "_tokens",
        "build_logs",
        "changes",
        "faults",
        "features",
        "injected",
        "rpcs",
        "streams",
    )

    def __init__(self) -> None:
        self.changes: dict[_ChangeKey, int] = {}
        self.rpcs: dict[tuple[str, str], int] = {}
        self.injected: set[tuple[str, str]] = set()
        self.streams: dict[tuple[str, str], int] = {}
        self.build_logs: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.features: dict[str, int] = {}
        self._tokens: set[tuple[str, str, str]] = set()

    def status_change(self, change: StatusChange) -> None:
        """One status change of an instance (the engine observer's event), once per change.

        Keyed by the phases (the core's IntEnum hashes and compares as its int value, in C) and
        read by index: the fields' names are properties, one call each."""
        previous = change[4]  # .previous
        key = (-1 if previous is None else previous[1], change[5][1], change[6])  # phases, cause
        changes = self.changes
        changes[key] = changes.get(key, 0) + 1

    def rpc(self, method: str, code: str, *, injected: bool = False) -> None:
        """A WorkspacesService call ended with ``code`` (``injected``: a fault made that code)."""
        key = (method, code)
        self.rpcs[key] = self.rpcs.get(key, 0) + 1
        if injected:
            self.injected.add(key)

    def stream_end(self, method: str, end: str) -> None:
        key = (method, end)
        self.streams[key] = self.streams.get(key, 0) + 1

    def build_log(self, kind: str) -> None:
        self.build_logs[kind] = self.build_logs.get(kind, 0) + 1

    def fault(self, kind: str, times: int = 1) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + times

    def feature(self, name: str) -> None:
        self.features[name] = self.features.get(name, 0) + 1

    def idempotent_call(self, caller: str, method: str, token: str) -> None:
        """A successful call with an idempotency token: the second and later are replays.

        Replays are told apart as the engine does (per caller, RPC and token; a different request
        with the same token is INVALID_ARGUMENT, so never arrives here)."""
        key = (caller, method, token)
        if key in self._tokens:
            self.feature(f"idempotent-replay:{method}")
        else:
            self._tokens.add(key)

    def forget_tokens(self) -> None:
        """The engine forgot its idempotency records (a reset or an import)."""
        self._tokens.clear()

    def clear(self) -> None:
        """Start counting again from zero (idempotency records stay: the engine keeps them)."""
        for counts in (self.changes, self.rpcs, self.streams, self.build_logs, self.faults):
            counts.clear()
        self.features.clear()
        self.injected.clear()

    def report(self) -> CoverageReport:
        report = CoverageReport()
        for (previous_value, value, cause), n in self.changes.items():
            previous = None if previous_value < 0 else Phase(previous_value)
            phase = Phase(value)
            changed = previous is not phase
            if changed:
                key = (
                    None if previous is None else previous.name,
                    phase.name,
                    cat.trigger_of(cause),
                )
                _add(report.transitions, key, n)
                _add(report.phases, phase.name, n)
            condition = cat.condition_of(phase.name, cause, changed)
            if condition is not None:
                _add(report.conditions, condition, n)
        for rpc_key, n in self.rpcs.items():
            _add(report.rpcs, rpc_key, n)
        report.injected |= self.injected
        for stream_key, n in self.streams.items():
            _add(report.streams, stream_key, n)
        for group, counts in (
            (report.build_logs, self.build_logs),
            (report.faults, self.faults),
            (report.features, self.features),
        ):
            for name, n in counts.items():
                _add(group, name, n)
        return report


def _add(counts: dict[Any, int], key: Any, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


@dataclass(frozen=True, slots=True)
class GroupTotal:
    hit: int
    of: int
    unexpected: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.hit / self.of if self.of else 100.0


_RpcKey = tuple[str, str]
_StreamKey = tuple[str, str]


def _catalogue() -> dict[str, tuple[Any, ...]]:
    return {
        "transitions": cat.TRANSITIONS,
        "phases": cat.PHASES,
        "conditions": cat.CONDITIONS,
        "rpcs": tuple((m, c) for m, codes in cat.EXPECTED_CODES.items() for c in codes),
        "streams": tuple((m, e) for m in cat.STREAM_METHODS for e in cat.STREAM_ENDS),
        "build_logs": cat.BUILD_LOG_KINDS,
        "faults": cat.FAULT_KINDS,
        "features": cat.FEATURES,
    }


CATALOGUE: Mapping[str, tuple[Any, ...]] = _catalogue()
"""Group -> every item of the group, in report order."""
_EXPECTED: Mapping[str, frozenset[Any]] = {g: frozenset(items) for g, items in CATALOGUE.items()}


@dataclass(slots=True)
class CoverageReport:
    """Counts per item of every group; items never seen count 0 (see :meth:`items`)."""

    transitions: dict[cat.TransitionKey, int] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    conditions: dict[str, int] = field(default_factory=dict)
    rpcs: dict[_RpcKey, int] = field(default_factory=dict)
    injected: set[_RpcKey] = field(default_factory=set)
    """Unexpected (RPC, code) pairs that a fault injected: not a bug of anyone's."""
    streams: dict[_StreamKey, int] = field(default_factory=dict)
    build_logs: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)

    # -------------------------------------------------------------- reading

    def counts(self, group: str) -> dict[Any, int]:
        counts: dict[Any, int] = getattr(self, group)
        return counts

    def items(self, group: str) -> list[tuple[Any, int, bool]]:
        """(item, count, expected) for every catalogue item, then every item seen outside it."""
        counts = self.counts(group)
        expected = _EXPECTED[group]
        out = [(item, counts.get(item, 0), True) for item in CATALOGUE[group]]
        extra = sorted((k for k in counts if k not in expected), key=_sort_key)
        out.extend((k, counts[k], False) for k in extra)
        return out

    def total(self, group: str) -> GroupTotal:
        counts = self.counts(group)
        items = CATALOGUE[group]
        hit = sum(1 for item in items if counts.get(item, 0) > 0)
        unexpected = sum(1 for k in counts if k not in _EXPECTED[group] and k not in self.injected)
        return GroupTotal(hit, len(items), unexpected)

    def totals(self) -> dict[str, GroupTotal]:
        per_group = {group: self.total(group) for group in cat.GROUPS}
        per_group["all"] = GroupTotal(
            sum(t.hit for t in per_group.values()),
            sum(t.of for t in per_group.values()),
            sum(t.unexpected for t in per_group.values()),
        )
        return per_group

    def missed(self) -> list[tuple[str, str]]:
        """(group, item label) of every catalogue item never exercised, in report order."""
        return [
            (group, label(group, item))
            for group in cat.GROUPS
            for item, count, expected in self.items(group)
            if expected and count == 0
        ]

    def unexpected(self) -> list[tuple[str, str, int]]:
        """(group, item label, count) of everything seen outside the catalogue (fault-injected
        RPC codes excluded): a bug of the simulator, or of the spec."""
        return [
            (group, label(group, item), count)
            for group in cat.GROUPS
            for item, count, expected in self.items(group)
            if not expected and not (group == "rpcs" and item in self.injected)
        ]

    # -------------------------------------------------------------- combining

    def merge(self, other: CoverageReport) -> CoverageReport:
        """A new report with the counts of both (coverage of two runs, workers or sessions)."""
        merged = CoverageReport()
        for group in cat.GROUPS:
            target = merged.counts(group)
            for source in (self, other):
                for key, n in source.counts(group).items():
                    _add(target, key, n)
        merged.injected = self.injected | other.injected
        return merged

    @classmethod
    def merge_all(cls, reports: Iterable[CoverageReport]) -> CoverageReport:
        merged = cls()
        for report in reports:
            merged = merged.merge(report)
        return merged

    # -------------------------------------------------------------- JSON

    def to_json(self) -> dict[str, Any]:
        """The stable JSON format (README, "Coverage"): every catalogue item, count 0 if unseen."""
        totals = self.totals()
        return {
            "format": FORMAT,
            "transitions": [
                {"from": f, "to": t, "trigger": trig, "count": n, "expected": e}
                for (f, t, trig), n, e in self.items("transitions")
            ],
            "phases": {name: n for name, n, _ in self.items("phases")},
            "conditions": {name: n for name, n, _ in self.items("conditions")},
            "rpcs": [
                {"method": m, "code": c, "count": n, "expected": e}
                | ({"injected": True} if (m, c) in self.injected else {})
                for (m, c), n, e in self.items("rpcs")
            ],
            "streams": [
                {"method": m, "end": end, "count": n, "expected": e}
                for (m, end), n, e in self.items("streams")
            ],
            "build_logs": {name: n for name, n, _ in self.items("build_logs")},
            "faults": {name: n for name, n, _ in self.items("faults")},
            "features": {name: n for name, n, _ in self.items("features")},
            "totals": {
                group: {"hit": t.hit, "of": t.of, "unexpected": t.unexpected}
                for group, t in totals.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CoverageReport:
        """Read :meth:`to_json` back (to merge reports of several processes)."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a gitpod-sim coverage report (format {data.get('format')!r})")
        report = cls()
        try:
            for t in data["transitions"]:
                _add(report.transitions, (t["from"], t["to"], t["trigger"]), int(t["count"]))
            for r in data["rpcs"]:
                key = (r["method"], r["code"])
                _add(report.rpcs, key, int(r["count"]))
                if r.get("injected"):
                    report.injected.add(key)
            for s in data["streams"]:
                _add(report.streams, (s["method"], s["end"]), int(s["count"]))
            for group in ("phases", "conditions", "build_logs", "faults", "features"):
                for name, n in data[group].items():
                    _add(report.counts(group), name, int(n))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed coverage report: {exc!r}") from None
        for group in cat.GROUPS:  # keep counts of 0 out: they are implied
            counts = report.counts(group)
            for key in [k for k, n in counts.items() if n == 0]:
                del counts[key]
        return report


def label(group: str, item: Any) -> str:
    """How reports name an item: ``PENDING -> CREATING (step-done)``, ``StopWorkspace
    FAILED_PRECONDITION``, ``ListenToWorkspaceInstance: client-cancel``, ``fail-creating``."""
    if group == "transitions":
        start, to, trigger = item
        return f"{start or '(start)'} -> {to} ({trigger})"
    if group == "rpcs":
        return f"{item[0]} {item[1]}"
    if group == "streams":
        return f"{item[0]}: {item[1]}"
    return str(item)


def _sort_key(item: Any) -> str:
    return repr(item)
