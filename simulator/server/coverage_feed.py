"""Feeds the pure coverage counter from what the host already sees.

The runtime hands over each status change (the engine observer's stream) and each journaled
WorkspacesService call (method, caller, request, status code, message); the service says how a
build log stream was served. From those this module tells a stream's ending, paging, idempotent
replays and shared reads apart, and counts fault firings from the faults' own ``times_applied``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from simulator.core.coverage import CoverageCounter, CoverageReport
from simulator.core.coverage_catalogue import (
    EXPECTED_CODES,
    IDEMPOTENT_METHODS,
    SHARED_READ_METHODS,
    STREAM_METHODS,
)
from simulator.core.engine import Engine
from simulator.core.faults import ConnectionDrop, Fault, RpcError, StreamEnd, effect_name

SERVICE_PREFIX = "/gitpod.v1.WorkspacesService/"
_STREAMS = frozenset(STREAM_METHODS)
_IDEMPOTENT = frozenset(IDEMPOTENT_METHODS)
_SHARED_READS = frozenset(SHARED_READ_METHODS)
_EXPECTED = {m: frozenset(codes) for m, codes in EXPECTED_CODES.items()}
_CLIENT_GONE = frozenset({"CANCELLED", "DEADLINE_EXCEEDED"})


class CoverageFeed:
    """One simulator's coverage: the counter, and the faults whose firings it counts."""

    def __init__(self, engine: Callable[[], Engine], close_reasons: Collection[str]) -> None:
        self.counter = CoverageCounter()
        self._engine = engine
        self._close_reasons = frozenset(close_reasons)
        self._faults: dict[int, tuple[Fault, int]] = {}
        """id(fault) -> (fault, times_applied already counted)."""

    # -------------------------------------------------------------- what flows in

    def track_fault(self, fault: Fault, *, new: bool = True) -> None:
        """A fault was added (``new``: every firing counts, the ones while adding it too) or
        imported (its firings count from now on)."""
        self._faults.setdefault(id(fault), (fault, 0 if new else fault.times_applied))

    def rpc(self, path: str, caller: str, request: Any, code: str, message: str) -> None:
        """A call ended (what the journal records)."""
        if not path.startswith(SERVICE_PREFIX):
            return  # the control plane is not the API under test
        method = path[len(SERVICE_PREFIX) :]
        counter = self.counter
        expected = _EXPECTED.get(method, frozenset())
        if method in _STREAMS:
            end = self._stream_end(code, message, expected)
            if end is not None:
                counter.stream_end(method, end)
                if end in ("client-cancel", "shutdown"):
                    return  # how the stream ended, not what the RPC answered
        injected = code not in expected and self._injected(path, method, code)
        counter.rpc(method, code, injected=injected)
        if code != "OK" or request is None:
            return
        if method == "ListWorkspaces":
            pagination = getattr(request, "pagination", None)
            if pagination is not None and pagination.page_token:
                counter.feature("paging")
        elif method in _IDEMPOTENT:
            token = getattr(request, "idempotency_token", "")
            if token:
                counter.idempotent_call(caller, method, token)
        if method in _SHARED_READS and self._owner_of(request) not in (None, caller):
            counter.feature(f"shared-read:{method}")

    def build_log(self, kind: str) -> None:
        """How ListenToImageBuildLogs served a call: ``live``, ``replayed`` or ``no-build``."""
        self.counter.build_log(kind)

    def engine_replaced(self) -> None:
        """A reset or an import: the engine's idempotency records are gone (or replaced)."""
        self.counter.forget_tokens()
        for fault in self._engine().faults:
            self.track_fault(fault, new=False)

    # -------------------------------------------------------------- reading

    def report(self) -> CoverageReport:
        self._count_fault_firings()
        return self.counter.report()

    def clear(self) -> None:
        self._count_fault_firings()
        self.counter.clear()

    # -------------------------------------------------------------- internals

    def _count_fault_firings(self) -> None:
        for key, (fault, counted) in list(self._faults.items()):
            if fault.times_applied > counted:
                self.counter.fault(effect_name(fault.effect), fault.times_applied - counted)
                self._faults[key] = (fault, fault.times_applied)

    def _stream_end(self, code: str, message: str, expected: frozenset[str]) -> str | None:
        if code == "OK":
            return "completed"
        if code in _CLIENT_GONE:
            return "client-cancel"
        if message in self._close_reasons:
            return "shutdown"
        if code in expected:
            return None  # the request was refused: the stream never ran
        return "server-error"

    def _injected(self, path: str, method: str, code: str) -> bool:
        for fault, _ in self._faults.values():
            effect = fault.effect
            if isinstance(effect, RpcError) and effect.method == path and effect.code == code:
                return True
            if (
                isinstance(effect, ConnectionDrop)
                and effect.method == path
                and code
                in (
                    "UNAVAILABLE",
                    "CANCELLED",
                )
            ):
                return True
            if isinstance(effect, StreamEnd) and effect.method == path and effect.code == code:
                return True
        return False

    def _owner_of(self, request: Any) -> str | None:
        engine = self._engine()
        workspace_id = getattr(request, "workspace_id", None)
        if workspace_id:
            ws = engine.workspaces.get(workspace_id)
            return None if ws is None else ws.owner_id
        instance_id = getattr(request, "instance_id", None)
        if instance_id:
            inst = engine.instances.get(instance_id)
            return None if inst is None else inst.owner_id
        return None
