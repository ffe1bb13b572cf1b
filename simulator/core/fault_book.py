"""The faults a world holds: which are pending, which are bound to which instance, and which hit.

Its own state (the faults, their counter and the seeded stream that draws probabilities), saved
and restored by :meth:`FaultBook.to_json` / :meth:`FaultBook.from_json`. The decisions are pure:
given the simulated time and a call, a stream or a start, it says which faults apply and consumes
them. What a bound fault *does* to an instance (cancel a step, schedule an interruption) is the
engine's job; the book only keeps the bindings.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from simulator.core.errors import InvalidArgument, NotFound
from simulator.core.faults import (
    FOLLOW_JOURNAL,
    ConnectionDrop,
    Effect,
    Family,
    Fault,
    RpcError,
    RpcLatency,
    StreamDuplicate,
    StreamEnd,
    Target,
    TargetKind,
    effect_from_json,
    effect_to_json,
    validate_effect,
)
from simulator.core.model import Instance, Workspace
from simulator.core.simtime import SimTime, format_instant
from simulator.core.transitions import Phase

Json = dict[str, Any]


def never_applies(fault: Fault, now: SimTime | None) -> str:
    """Why ``fault`` could never apply (empty when it can): refused rather than left pending."""
    if now is not None and fault.active_until is not None and fault.active_until <= now:
        return f"its window ends at {format_instant(fault.active_until)}, not after now"
    effect = fault.effect
    if (
        fault.kind.family is Family.STREAM
        and effect.method == FOLLOW_JOURNAL  # type: ignore[union-attr]
        and fault.target.kind is not TargetKind.ANY
    ):
        return (
            "FollowJournal is about no instance and only the admin calls it;"
            f" it cannot target {fault.target.kind.value} (use any)"
        )
    return ""


class FaultBook:
    """Every fault by id, in the order they were added (the order they are consulted in)."""

    def __init__(self, seed: int) -> None:
        self._faults: dict[str, Fault] = {}
        self._seq = 0
        self._seed = seed
        self._stream: random.Random | None = None

    def _rng(self) -> random.Random:
        """The book's seeded stream (probabilities), made on its first use."""
        if self._stream is None:
            self._stream = random.Random(f"gitpod-sim:{self._seed}:faults")
        return self._stream

    def __iter__(self) -> Iterator[Fault]:
        return iter(list(self._faults.values()))

    def __len__(self) -> int:
        return len(self._faults)

    def get(self, fault_id: str) -> Fault | None:
        return self._faults.get(fault_id)

    # ------------------------------------------------------------------ adding and clearing

    def add(
        self,
        effect: Effect,
        target: Target,
        *,
        count: int = 0,
        active_from: SimTime | None = None,
        active_until: SimTime | None = None,
        skip: int = 0,
        now: SimTime | None = None,
    ) -> Fault:
        """A new fault, checked (bad effects, targets or windows are INVALID_ARGUMENT, and so is
        a fault that can never apply: see :func:`never_applies`)."""
        validate_effect(effect)
        fault = Fault(  # checks itself before anything changes
            f"fault-{self._seq + 1}",
            effect,
            target,
            count=count,
            active_from=active_from,
            active_until=active_until,
            skip=skip,
        )
        why = never_applies(fault, now)
        if why:
            raise InvalidArgument(f"this {fault.kind.name} fault can never apply: {why}")
        self._seq += 1
        self._faults[fault.id] = fault
        return fault

    def select(self, fault_ids: list[str] | None) -> list[Fault]:
        """The given faults (all when None); an unknown id is NOT_FOUND."""
        if fault_ids is None:
            return list(self._faults.values())
        missing = [f for f in fault_ids if f not in self._faults]
        if missing:
            raise NotFound(f"no such fault: {', '.join(missing)}")
        return [self._faults[f] for f in fault_ids]

    def remove(self, fault: Fault) -> None:
        del self._faults[fault.id]

    # ------------------------------------------------------------------ decisions

    def take_rpc(self, method: str, now: SimTime, user_id: str = "") -> list[Fault]:
        """The RPC faults that hit this call of ``method`` (a full path) by ``user_id``,
        consuming them."""
        hits: list[Fault] = []
        for fault in self._faults.values():
            effect = fault.effect
            if fault.kind.family is not Family.RPC or effect.method != method:  # type: ignore[union-attr]
                continue
            target = fault.target
            if target.kind is TargetKind.USER and target.value != user_id:
                continue
            if not fault.applies_at(now) or fault.passes():
                continue
            if (
                isinstance(effect, RpcError)
                and effect.probability > 0
                and self._rng().random() >= effect.probability
            ):
                continue
            fault.take()
            hits.append(fault)
        return hits

    def take_stream(
        self,
        method: str,
        now: SimTime,
        *,
        user_id: str = "",
        workspace_id: str = "",
        instance_id: str = "",
    ) -> list[Fault]:
        """The stream faults that hit a new stream of ``method`` (a full path) about an instance
        (none for FollowJournal), consuming them."""
        hits: list[Fault] = []
        for fault in self._faults.values():
            if fault.kind.family is not Family.STREAM or fault.effect.method != method:  # type: ignore[union-attr]
                continue
            target = fault.target
            if target.kind is TargetKind.WORKSPACE and target.value != workspace_id:
                continue
            if target.kind is TargetKind.INSTANCE and target.value != instance_id:
                continue
            if target.kind is TargetKind.USER and target.value != user_id:
                continue
            if fault.applies_at(now) and not fault.passes():
                fault.take()
                hits.append(fault)
        return hits

    def for_start(self, ws: Workspace, now: SimTime) -> list[Fault]:
        """The lifecycle faults a new instance of ``ws`` starts with."""
        url = ws.context.normalized_url or ws.context.context_url
        chosen = []
        for fault in self._faults.values():
            if not fault.is_lifecycle or not fault.applies_at(now):
                continue
            target = fault.target
            if (
                target.kind is TargetKind.NEXT_START
                or (target.kind is TargetKind.WORKSPACE and target.value == ws.id)
                or (target.kind is TargetKind.USER and target.value == ws.owner_id)
                or (
                    target.kind is TargetKind.CONTEXT
                    and target.pattern is not None
                    and target.pattern.search(url)
                )
            ) and not fault.passes():
                chosen.append(fault)
        return chosen

    # ------------------------------------------------------------------ bindings

    def bind(self, fault: Fault, inst: Instance) -> None:
        """Attach a lifecycle fault to an instance (it counts as one application)."""
        fault.take()
        fault.instances.append(inst.id)
        inst.faults = (*inst.faults, fault.id)

    @staticmethod
    def unbind(fault: Fault, inst: Instance) -> bool:
        """Detach; False when it was not (or no longer) bound to ``inst``."""
        if fault.id not in inst.faults:
            return False
        i = inst.faults.index(fault.id)
        inst.faults = inst.faults[:i] + inst.faults[i + 1 :]
        return True

    def bound(self, inst: Instance, effect: type, phase: Phase | None = None) -> Fault | None:
        """The first fault with an ``effect`` bound to ``inst`` (for ``phase`` when given)."""
        for fault_id in inst.faults:
            fault = self._faults.get(fault_id)
            if fault is None or not isinstance(fault.effect, effect):
                continue
            if phase is None or getattr(fault.effect, "phase", None) is phase:
                return fault
        return None

    # ------------------------------------------------------------------ state

    def to_json(self) -> Json:
        version, internal, gauss = self._rng().getstate()
        return {
            "seq": self._seq,
            "rng": [version, list(internal), gauss],
            "items": [
                {
                    "id": f.id,
                    "effect": effect_to_json(f.effect),
                    "target": {"kind": f.target.kind.value, "value": f.target.value},
                    "count": f.count,
                    "active_from": f.active_from,
                    "active_until": f.active_until,
                    "times_applied": f.times_applied,
                    "instances": list(f.instances),
                    "skip": f.skip,
                    "skipped": f.skipped,
                }
                for f in self._faults.values()
            ],
        }

    @classmethod
    def from_json(cls, data: Json, seed: int) -> FaultBook:
        book = cls(seed)
        book._seq = int(data["seq"])
        version, internal, gauss = data["rng"]
        book._rng().setstate((version, tuple(internal), gauss))
        for f in data["items"]:
            fault = Fault(
                f["id"],
                effect_from_json(f["effect"]),
                Target.of(TargetKind(f["target"]["kind"]), f["target"]["value"]),
                count=int(f["count"]),
                active_from=f["active_from"],
                active_until=f["active_until"],
                times_applied=int(f["times_applied"]),
                instances=list(f["instances"]),
                skip=int(f.get("skip", 0)),
                skipped=int(f.get("skipped", 0)),
            )
            book._faults[fault.id] = fault
        return book


@dataclass(frozen=True, slots=True)
class CallFaults:
    """What the RPC faults that hit one call make of it: waits first, then a status or a dropped
    connection either instead of the call (``before``) or after it ran (``after``: the answer is
    lost). A connection drop wins over an error (nothing can be answered on a closed connection)."""

    latencies: tuple[RpcLatency, ...] = ()
    error: RpcError | ConnectionDrop | None = None

    @classmethod
    def of(cls, faults: list[Fault]) -> CallFaults:
        latencies = tuple(f.effect for f in faults if isinstance(f.effect, RpcLatency))
        drop = next((f.effect for f in faults if isinstance(f.effect, ConnectionDrop)), None)
        error = next((f.effect for f in faults if isinstance(f.effect, RpcError)), None)
        return cls(latencies, drop or error)

    @property
    def before(self) -> RpcError | ConnectionDrop | None:
        return self.error if self.error is not None and not self.error.after_effect else None

    @property
    def after(self) -> RpcError | ConnectionDrop | None:
        return self.error if self.error is not None and self.error.after_effect else None


@dataclass(frozen=True, slots=True)
class StreamFaults:
    """What the stream faults that hit one server stream make of it."""

    end: StreamEnd | None = None
    duplicate: bool = False

    @classmethod
    def of(cls, faults: list[Fault]) -> StreamFaults:
        end = next((f.effect for f in faults if isinstance(f.effect, StreamEnd)), None)
        return cls(end, any(isinstance(f.effect, StreamDuplicate) for f in faults))

    def __bool__(self) -> bool:
        return self.end is not None or self.duplicate
