"""The scenario format: TOML read with ``tomllib``, checked against a schema before anything runs.

Why TOML: the standard library parses it (no new dependency), it has real integers, booleans and
arrays of tables (``[[steps]]`` reads as a numbered story), and it has no implicit typing traps
(YAML's ``no`` and ``1:30``). ``tomllib`` keeps no line numbers, so :mod:`.source_map` finds them
again; every problem is reported as ``FILE:LINE: what was expected``.

A scenario has a ``[scenario]`` header (name, title, seed), a *setup* (``[[users]]``,
``[[plans]]``, ``[[prebuilds]]``, ``[[faults]]``, ``[[workspaces]]``, ``[setup]``) that
``gitpod-sim serve --scenario`` also loads as seed data, and ``[[steps]]``: actions on the
Gitpod API or the control plane, and expectations on what a client observes.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.core import limits
from simulator.core.errors import InvalidArgument, SimError
from simulator.core.faults import (
    FAULT_KINDS,
    FAULT_NAMES,
    KINDS,
    WORKSPACES_METHODS,
    Effect,
    Param,
    ParamType,
    TargetKind,
    effect_name,
    status_name,
)
from simulator.core.patterns import compile_pattern
from simulator.core.plan import (
    TIMED_PHASES,
    TIMEOUT_NAMES,
    BuildPolicy,
    Distribution,
    Fixed,
    LifecyclePlan,
    Timeouts,
    Uniform,
)
from simulator.core.simtime import DEFAULT_START, Duration, SimTime, parse_duration, parse_instant
from simulator.core.transitions import INITIAL_PHASES, LEGAL_TRANSITIONS, Phase, is_legal
from simulator.scenario.source_map import SourceMap

__all__ = [
    "ACTIONS",
    "Expect",
    "FaultSpec",
    "PlanSpec",
    "PrebuildSpec",
    "Scenario",
    "ScenarioError",
    "Step",
    "UserSpec",
    "WorkspaceSpec",
    "load",
    "loads",
]

ACTIONS = (
    "create",
    "start",
    "stop",
    "get",
    "active_instance",
    "owner_token",
    "list",
    "mark_active",
    "share",
    "advance",
    "fault",
    "clear_faults",
    "fail",
    "call",
    "expect",
    "note",
)
"""Exactly one of these keys names what a ``[[steps]]`` item does."""

_CALL_OPTIONS = ("user", "expect_error", "expect_message")
_STEP_OPTIONS: dict[str, tuple[str, ...]] = {
    "create": (*_CALL_OPTIONS, "context", "prebuild", "idempotency_token", "same_as", "listen"),
    "start": (*_CALL_OPTIONS, "idempotency_token", "same_instance"),
    "stop": (*_CALL_OPTIONS, "idempotency_token"),
    "get": _CALL_OPTIONS,
    "active_instance": (*_CALL_OPTIONS, "expect_phase"),
    "owner_token": _CALL_OPTIONS,
    "list": (
        "expect_error",
        "expect_message",
        "page_size",
        "all_pages",
        "expect_count",
        "expect_pages",
        "expect_workspaces",
    ),
    "call": (
        *_CALL_OPTIONS,
        "workspace",
        "workspace_id",
        "instance_id",
        "context",
        "token",
        "admin",
    ),
    "fail": ("reason",),
    "mark_active": (),
    "share": ("shared",),
    "advance": (),
    "fault": (),  # the fault's own keys, below
    "clear_faults": (),
    "expect": (
        "instance",
        "phase",
        "phases",
        "failed",
        "timeout",
        "message",
        "stopped_by_request",
        "admission",
        "entered",
        "log_tail",
        "log_lines",
        "log_contains",
    ),
    "note": (),
}
_FAULT_KEYS = (
    "name",
    "target",
    "workspace",
    "context",
    "user",
    "count",
    "skip",
    "from",
    "until",
    *dict.fromkeys(p.name for kind in FAULT_KINDS for p in kind.params),
)
_PARAM_KEYS = frozenset(p.name for kind in FAULT_KINDS for p in kind.params)
_ALL_STEP_KEYS = frozenset(
    (*ACTIONS, "at", *_FAULT_KEYS, *(k for opts in _STEP_OPTIONS.values() for k in opts))
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ScenarioError(Exception):
    """Every problem of one scenario file, each as ``FILE:LINE: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class UserSpec:
    id: str
    token: str | None
    line: int


@dataclass(frozen=True, slots=True)
class PlanSpec:
    scope: str
    """``global``, ``user`` or ``context``."""
    value: str
    plan: LifecyclePlan
    line: int


@dataclass(frozen=True, slots=True)
class PrebuildSpec:
    id: str
    context: str
    commit: str
    line: int


@dataclass(frozen=True, slots=True)
class FaultSpec:
    name: str
    effect: Effect
    target: TargetKind
    target_value: str
    """A workspace *name* of the scenario for ``workspace`` targets, else the pattern or ''."""
    count: int
    active_from: Duration | None
    """Relative to the scenario's start."""
    active_until: Duration | None
    line: int
    skip: int = 0
    """Matching occasions let pass before the first application."""

    @property
    def kind(self) -> str:
        return effect_name(self.effect)


@dataclass(frozen=True, slots=True)
class WorkspaceSpec:
    name: str
    user: str
    context: str
    prebuild: str
    count: int
    """More than 1: ``name-1`` .. ``name-N``, with ``{i}`` in the context replaced."""
    listen: bool
    line: int

    def expand(self) -> list[tuple[str, str]]:
        """(name, context) of every workspace this entry creates."""
        if self.count == 1:
            return [(self.name, self.context)]
        return [
            (f"{self.name}-{i}", self.context.replace("{i}", str(i)))
            for i in range(1, self.count + 1)
        ]


@dataclass(frozen=True, slots=True)
class Expect:
    instance: int | None = None
    phase: Phase | None = None
    phases: tuple[Phase, ...] | None = None
    failed: str | None = None
    timeout: str | None = None
    message: str | None = None
    stopped_by_request: bool | None = None
    admission: str | None = None
    entered: tuple[tuple[Phase, Duration], ...] = ()
    log_tail: tuple[str, ...] | None = None
    log_lines: int | None = None
    log_contains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    """1-based, as a reader counts ``[[steps]]``."""
    line: int
    action: str
    subject: str
    """The workspace name, user, duration or text the action key was given."""
    at: Duration | None = None
    user: str | None = None
    context: str | None = None
    prebuild: str | None = None
    idempotency_token: str = ""
    expect_error: str | None = None
    expect_message: str | None = None
    same_as: str | None = None
    same_instance: bool | None = None
    listen: bool = True
    expect_phase: Phase | None = None
    page_size: int = 0
    all_pages: bool = False
    expect_count: int | None = None
    expect_pages: int | None = None
    expect_workspaces: tuple[str, ...] | None = None
    shared: bool = True
    fault: FaultSpec | None = None
    clear: tuple[str, ...] | None = None
    """clear_faults: fault names, or None for every fault."""
    workspace: str | None = None
    """call: the scenario workspace whose id (and latest instance id) the request carries."""
    workspace_id: str | None = None
    """call: a raw workspace id for the request (e.g. a malformed one)."""
    instance_id: str | None = None
    """call: a raw instance id for the request."""
    token: str | None = None
    """call: the raw ``authorization`` token instead of the user's ("" sends none)."""
    admin: bool = False
    """call: with the world's admin token (the Gitpod API refuses it)."""
    reason: str = ""
    """fail: conditions.failed."""
    expect: Expect | None = None

    def describe(self) -> str:
        return f"step {self.index} ({self.action} {self.subject})".replace(" )", ")")


@dataclass(slots=True)
class Scenario:
    path: str
    name: str
    title: str
    description: str
    seed: int
    start_time: SimTime
    users: list[UserSpec] = field(default_factory=list)
    plans: list[PlanSpec] = field(default_factory=list)
    prebuilds: list[PrebuildSpec] = field(default_factory=list)
    faults: list[FaultSpec] = field(default_factory=list)
    workspaces: list[WorkspaceSpec] = field(default_factory=list)
    setup_advance: Duration = 0
    steps: list[Step] = field(default_factory=list)

    @property
    def default_user(self) -> str:
        return self.users[0].id


# ---------------------------------------------------------------------------- loading


def load(path: str | Path) -> Scenario:
    """Read and check a scenario file; raises :class:`ScenarioError` listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    return loads(text, str(p))


def loads(text: str, filename: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise ScenarioError([f"{filename}:{m.group(1) if m else 1}: invalid TOML: {exc}"]) from None
    checker = _Checker(filename, SourceMap(text))
    scenario = checker.scenario(data)
    if checker.problems:
        raise ScenarioError(checker.problems)
    assert scenario is not None
    return scenario


_Where = tuple[str, int | None]


class _Checker:
    """Reads the parsed document into the model, collecting every problem with its line."""

    def __init__(self, filename: str, source: SourceMap) -> None:
        self.filename = filename
        self.src = source
        self.problems: list[str] = []

    # -------------------------------------------------------------- primitives

    def error(self, where: _Where, key: str | None, message: str) -> None:
        line = self.src.line(where[0], where[1], key)
        self.problems.append(f"{self.filename}:{line}: {message}")

    @staticmethod
    def title(where: _Where) -> str:
        table, index = where
        if not table:
            return "the top level"
        return f"[{table}]" if index is None else f"[[{table}]] #{index + 1}"

    def keys(self, table: dict[str, Any], where: _Where, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.error(
                    where,
                    key,
                    f"unknown key {key!r} in {self.title(where)}; expected one of: "
                    + ", ".join(allowed),
                )

    def get(
        self,
        table: dict[str, Any],
        where: _Where,
        key: str,
        kind: type | tuple[type, ...],
        expected: str,
        *,
        required: bool = False,
    ) -> Any:
        if key not in table:
            if required:
                self.error(where, None, f"{self.title(where)} needs {key!r} ({expected})")
            return None
        value = table[key]
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            ok = False
        else:
            ok = isinstance(value, kind)
        if not ok:
            self.error(where, key, f"{key!r} must be {expected}, got {_type_name(value)} {value!r}")
            return None
        return value

    def text(self, t: dict[str, Any], w: _Where, key: str, *, required: bool = False) -> Any:
        return self.get(t, w, key, str, "a string", required=required)

    def duration(
        self, t: dict[str, Any], w: _Where, key: str, *, required: bool = False
    ) -> Duration | None:
        value = self.get(t, w, key, str, 'a duration such as "90s"', required=required)
        if value is None:
            return None
        return self.parse_duration(value, w, key)

    def parse_duration(self, value: str, w: _Where, key: str) -> Duration | None:
        try:
            return limits.duration(key, parse_duration(value))
        except ValueError as exc:
            self.error(w, key, f"{key!r}: {exc}")
            return None

    def strings(self, t: dict[str, Any], w: _Where, key: str) -> tuple[str, ...] | None:
        value = self.get(t, w, key, list, "an array of strings")
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            self.error(w, key, f"{key!r} must be an array of strings, got {value!r}")
            return None
        return tuple(value)

    def phase(self, value: Any, w: _Where, key: str) -> Phase | None:
        names = [p.name for p in Phase if p is not Phase.UNSPECIFIED]
        if not isinstance(value, str) or value.upper() not in names:
            self.error(w, key, f"{key!r}: expected a phase ({', '.join(names)}), got {value!r}")
            return None
        return Phase[value.upper()]

    def code(self, t: dict[str, Any], w: _Where, key: str) -> str | None:
        value = self.get(t, w, key, (str, int), "a gRPC status name such as UNAVAILABLE")
        if value is None:
            return None
        try:
            return status_name(value)
        except InvalidArgument as exc:
            self.error(w, key, f"{key!r}: {exc.message}")
            return None

    def param(self, t: dict[str, Any], w: _Where, param: Param) -> object:
        """One fault parameter as the registry types it; None when absent (or wrong: reported)."""
        key, kind = param.name, param.type
        if kind in (ParamType.DURATION, ParamType.OPTIONAL_DURATION):
            return self.duration(t, w, key, required=param.required)
        if kind is ParamType.LINES:
            return self.strings(t, w, key)
        if kind is ParamType.PHASE:
            return self.phase(t.get(key), w, key)
        if kind is ParamType.CODE:
            return self.code(t, w, key)
        if kind is ParamType.PROBABILITY:
            return self.get(t, w, key, (float, int), "a number")
        if kind is ParamType.FLAG:
            return self.get(t, w, key, bool, "true or false")
        if kind is ParamType.COUNT:
            return self.get(t, w, key, int, "an integer")
        return self.text(t, w, key, required=param.required)  # TEXT, METHOD

    def table_list(self, data: dict[str, Any], name: str) -> list[tuple[dict[str, Any], _Where]]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.error(("", None), name, f"{name!r} must be written as [[{name}]] tables")
            return []
        return [(item, (name, i)) for i, item in enumerate(value)]

    # -------------------------------------------------------------- the document

    def scenario(self, data: dict[str, Any]) -> Scenario | None:
        top = ("", None)
        self.keys(
            data,
            top,
            ("scenario", "users", "plans", "prebuilds", "faults", "workspaces", "setup", "steps"),
        )
        head = data.get("scenario")
        w: _Where = ("scenario", None)
        if not isinstance(head, dict):
            self.error(top, "scenario", "a scenario needs a [scenario] table (name, title, seed)")
            head = {}
        self.keys(head, w, ("name", "title", "description", "seed", "start_time"))
        stem = Path(self.filename).stem
        name = self.text(head, w, "name") or stem
        title = self.text(head, w, "title", required=True) or ""
        seed = self.get(head, w, "seed", int, "an integer")
        if seed is not None:
            try:
                limits.seed(seed)
            except ValueError as exc:
                self.error(w, "seed", f"'seed': {exc}")
                seed = None
        start = DEFAULT_START
        if (text := self.text(head, w, "start_time")) is not None:
            try:
                start = limits.instant("start_time", parse_instant(text))
            except ValueError as exc:
                self.error(w, "start_time", f"'start_time': {exc}")
        sc = Scenario(
            path=self.filename,
            name=name,
            title=title,
            description=self.text(head, w, "description") or "",
            seed=seed if seed is not None else 0,
            start_time=start,
        )
        self.users(data, sc)
        self.plans(data, sc)
        self.prebuilds(data, sc)
        for item, where in self.table_list(data, "faults"):
            self.keys(item, where, ("effect", *_FAULT_KEYS))
            effect = self.text(item, where, "effect", required=True)
            fault = None if effect is None else self.fault(item, where, "effect", effect)
            if fault is not None and fault.target is TargetKind.WORKSPACE:
                self.error(
                    where,
                    "workspace",
                    "a setup fault cannot target a workspace (none exists yet); "
                    "add it with a fault step after the workspace is created",
                )
            elif fault is not None:
                sc.faults.append(fault)
        names = self.workspaces(data, sc)
        setup = data.get("setup", {})
        if not isinstance(setup, dict):
            self.error(top, "setup", "'setup' must be a table")
            setup = {}
        self.keys(setup, ("setup", None), ("advance",))
        sc.setup_advance = self.duration(setup, ("setup", None), "advance") or 0
        self.steps(data, sc, names)
        return sc

    def users(self, data: dict[str, Any], sc: Scenario) -> None:
        seen: set[str] = set()
        for item, where in self.table_list(data, "users"):
            self.keys(item, where, ("id", "token"))
            uid = self.text(item, where, "id", required=True)
            token = self.text(item, where, "token")
            if uid is None:
                continue
            if uid in seen:
                self.error(where, "id", f"user {uid!r} is defined twice")
            seen.add(uid)
            sc.users.append(UserSpec(uid, token, self.src.line(*where)))
        if not sc.users:
            self.error(("", None), None, "a scenario needs at least one [[users]] table (id)")

    def plans(self, data: dict[str, Any], sc: Scenario) -> None:
        users = {u.id for u in sc.users}
        for item, w in self.table_list(data, "plans"):
            self.keys(
                item,
                w,
                ("scope", "match", "durations", "build", "timeouts", "cluster", "build_log_lines"),
            )
            scope = self.text(item, w, "scope") or "global"
            value = self.text(item, w, "match") or ""
            if scope not in ("global", "user", "context"):
                self.error(w, "scope", f"'scope' must be global, user or context, got {scope!r}")
            elif scope == "user" and value not in users:
                self.error(w, "match", f"'match' must name a user of the scenario, got {value!r}")
            elif scope == "context" and not value:
                self.error(w, "match", "a context plan needs 'match', a regular expression")
            elif scope == "context":
                try:
                    compile_pattern(value, "'match'")
                except SimError as exc:
                    self.error(w, "match", exc.message)
            durations: dict[Phase, Distribution] = {}
            table = self.get(item, w, "durations", dict, "an inline table of phase = duration")
            for key, spec in (table or {}).items():
                phase = self.phase(key, w, "durations")
                if phase is not None and phase not in TIMED_PHASES:
                    self.error(w, "durations", f"phase {phase.name} has no duration of its own")
                elif phase is not None:
                    dist = self.distribution(spec, w)
                    if dist is not None:
                        durations[phase] = dist
            timeouts = Timeouts()
            ttable = self.get(item, w, "timeouts", dict, "an inline table of limit = duration")
            for key, spec in (ttable or {}).items():
                if key not in TIMEOUT_NAMES:
                    self.error(
                        w,
                        "timeouts",
                        f"unknown timeout {key!r}; expected one of: " + ", ".join(TIMEOUT_NAMES),
                    )
                    continue
                if not isinstance(spec, str):
                    self.error(w, "timeouts", f"timeout {key!r} must be a duration string or 'off'")
                    continue
                limit = None if spec == "off" else self.parse_duration(spec, w, "timeouts")
                timeouts = _replace_timeout(timeouts, key, limit)
            build = self.text(item, w, "build") or "first-start"
            try:
                policy = BuildPolicy(build)
            except ValueError:
                self.error(w, "build", f"'build' must be first-start, always or never: {build!r}")
                policy = BuildPolicy.FIRST_START
            lines = self.get(item, w, "build_log_lines", int, "an integer") or 8
            try:
                plan = LifecyclePlan(
                    durations={**LifecyclePlan().durations, **durations},
                    build_policy=policy,
                    timeouts=timeouts,
                    cluster=self.text(item, w, "cluster") or "eu53",
                    build_log_lines=lines,
                )
            except ValueError as exc:
                self.error(w, None, f"invalid plan: {exc}")
                continue
            sc.plans.append(PlanSpec(scope, value, plan, self.src.line(*w)))

    def distribution(self, spec: Any, w: _Where) -> Distribution | None:
        if not isinstance(spec, str):
            self.error(
                w, "durations", f'a duration must be a string ("10s" or "5s..15s"): {spec!r}'
            )
            return None
        low, sep, high = spec.partition("..")
        a = self.parse_duration(low, w, "durations")
        b = self.parse_duration(high, w, "durations") if sep else a
        if a is None or b is None:
            return None
        if b < a:
            self.error(w, "durations", f"uniform range {spec!r} must not run backwards")
            return None
        return Fixed(a) if a == b else Uniform(a, b)

    def prebuilds(self, data: dict[str, Any], sc: Scenario) -> None:
        for item, w in self.table_list(data, "prebuilds"):
            self.keys(item, w, ("id", "context", "commit"))
            pid = self.text(item, w, "id", required=True)
            ctx = self.text(item, w, "context", required=True)
            if pid is not None and ctx is not None:
                commit = self.text(item, w, "commit") or ""
                sc.prebuilds.append(PrebuildSpec(pid, ctx, commit, self.src.line(*w)))

    def fault(self, t: dict[str, Any], w: _Where, kind_key: str, kind: str) -> FaultSpec | None:
        before = len(self.problems)
        fault_kind = KINDS.get(kind)
        if fault_kind is None:
            self.error(
                w,
                kind_key,
                f"unknown fault {kind!r}; expected one of: " + ", ".join(FAULT_NAMES),
            )
            return None
        for key in sorted(set(t) & _PARAM_KEYS - {p.name for p in fault_kind.params}):
            self.error(w, key, f"a {kind} fault has no {key!r}")
        values = {p.name: self.param(t, w, p) for p in fault_kind.params}
        effect: Effect | None = None
        if len(self.problems) == before:
            try:
                effect = fault_kind.build(values)
            except InvalidArgument as exc:
                self.error(w, kind_key, f"invalid {kind} fault: {exc.message}")
                return None
        target_name = self.text(t, w, "target")
        workspace = self.text(t, w, "workspace")
        context = self.text(t, w, "context")
        user = self.text(t, w, "user")
        if user is not None:
            target, value = TargetKind.USER, user
        elif workspace is not None:
            target, value = TargetKind.WORKSPACE, workspace
        elif context is not None:
            target, value = TargetKind.CONTEXT, context
        elif target_name is not None:
            try:
                target = TargetKind(target_name)
            except ValueError:
                target = TargetKind.NEXT_START
                self.error(w, "target", f"'target' must be next-start or any, got {target_name!r}")
            value = ""
            if target not in (TargetKind.NEXT_START, TargetKind.ANY):
                self.error(w, "target", "use 'workspace = NAME' or 'context = REGEX' instead")
        else:
            target, value = fault_kind.default_target, ""
        if context is not None:
            try:
                compile_pattern(context, "'context'")
            except SimError as exc:
                self.error(w, "context", exc.message)
        count = self.get(t, w, "count", int, "an integer >= 0")
        if count is not None and count < 0:
            self.error(w, "count", "'count' must be >= 0 (0: unlimited)")
        elif count is not None and count > limits.MAX_COUNT:
            self.error(w, "count", f"'count' must be at most {limits.MAX_COUNT}")
        skip = self.get(t, w, "skip", int, "an integer >= 0")
        if skip is not None and skip < 0:
            self.error(w, "skip", "'skip' must be >= 0")
        start = self.duration(t, w, "from")
        until = self.duration(t, w, "until")
        if start is not None and until is not None and until <= start:
            self.error(w, "until", "'until' must be after 'from'")
        if effect is None or len(self.problems) > before:
            return None
        try:
            from simulator.core.faults import Fault, Target

            Fault(
                "", effect, Target.of(target, value if target is not TargetKind.WORKSPACE else "x")
            )
        except InvalidArgument as exc:
            self.error(w, kind_key, exc.message)
            return None
        return FaultSpec(
            name=self.text(t, w, "name") or "",
            effect=effect,
            target=target,
            target_value=value,
            count=count or 0,
            active_from=start,
            active_until=until,
            line=self.src.line(w[0], w[1], kind_key),
            skip=skip or 0,
        )

    def workspaces(self, data: dict[str, Any], sc: Scenario) -> dict[str, int]:
        users = {u.id for u in sc.users}
        prebuilds = {p.id for p in sc.prebuilds}
        names: dict[str, int] = {}
        for item, w in self.table_list(data, "workspaces"):
            self.keys(item, w, ("name", "user", "context", "prebuild", "count", "listen"))
            name = self.text(item, w, "name", required=True)
            user = self.text(item, w, "user") or (sc.default_user if sc.users else "")
            context = self.text(item, w, "context") or ""
            prebuild = self.text(item, w, "prebuild") or ""
            count = self.get(item, w, "count", int, "an integer >= 1")
            listen = self.get(item, w, "listen", bool, "true or false")
            if user and user not in users:
                self.error(w, "user", f"user {user!r} is not defined in [[users]]")
            if bool(context) == bool(prebuild):
                self.error(w, None, f"{self.title(w)} needs exactly one of 'context', 'prebuild'")
            if prebuild and prebuild not in prebuilds:
                self.error(w, "prebuild", f"prebuild {prebuild!r} is not defined in [[prebuilds]]")
            if count is not None and count < 1:
                self.error(w, "count", "'count' must be >= 1")
            if name is None:
                continue
            if not _NAME.match(name):
                self.error(w, "name", f"workspace name {name!r}: letters, digits, '-', '_', '.'")
            spec = WorkspaceSpec(
                name,
                user,
                context,
                prebuild,
                count or 1,
                listen if listen is not None else (count or 1) == 1,
                self.src.line(*w),
            )
            for each, _ in spec.expand():
                if each in names:
                    self.error(w, "name", f"workspace {each!r} is defined twice")
                names[each] = spec.line
            sc.workspaces.append(spec)
        return names

    # -------------------------------------------------------------- steps

    def steps(self, data: dict[str, Any], sc: Scenario, names: dict[str, int]) -> None:
        users = {u.id for u in sc.users}
        prebuilds = {p.id for p in sc.prebuilds}
        fault_names = {f.name for f in sc.faults if f.name}
        stopped: dict[str, int] = {}  # workspace -> line of an expectation that it is STOPPED
        last_at = 0
        for item, w in self.table_list(data, "steps"):
            index = w[1]
            assert index is not None
            line = self.src.line(*w)
            actions = [a for a in ACTIONS if a in item]
            if not actions and any(k not in _ALL_STEP_KEYS for k in item):
                self.keys(item, w, (*ACTIONS, "at"))
                continue
            if len(actions) != 1:
                found = ", ".join(actions) if actions else "none"
                self.error(
                    w,
                    actions[1] if len(actions) > 1 else None,
                    f"[[steps]] #{index + 1} needs exactly one action key ({', '.join(ACTIONS)});"
                    f" found {found}",
                )
                continue
            action = actions[0]
            options = _FAULT_KEYS if action == "fault" else _STEP_OPTIONS[action]
            self.keys(item, w, (action, "at", *options))
            at = self.duration(item, w, "at")
            if at is not None:
                if at < last_at:
                    self.error(w, "at", "'at' goes back in time: steps run in order")
                last_at = at
            raw = item[action]
            step = self.step(sc, item, w, action, raw, at, line, index + 1)
            if step is None:
                continue
            self.references(step, w, names, users, prebuilds, fault_names, stopped)
            if step.action == "advance" and step.subject not in ("next", "idle"):
                last_at += step_duration(step) or 0
            sc.steps.append(step)

    def step(
        self,
        sc: Scenario,
        t: dict[str, Any],
        w: _Where,
        action: str,
        raw: Any,
        at: Duration | None,
        line: int,
        number: int,
    ) -> Step | None:
        before = len(self.problems)
        if action == "clear_faults":
            if raw == "all":
                clear: tuple[str, ...] | None = None
            elif isinstance(raw, list) and all(isinstance(v, str) for v in raw):
                clear = tuple(raw)
            else:
                self.error(w, action, "'clear_faults' must be \"all\" or an array of fault names")
                return None
            return Step(
                number,
                line,
                action,
                "all" if clear is None else ",".join(clear),
                at=at,
                clear=clear,
            )
        if not isinstance(raw, str):
            self.error(w, action, f"{action!r} must be a string, got {_type_name(raw)} {raw!r}")
            return None
        if action == "advance" and raw not in ("next", "idle"):
            self.parse_duration(raw, w, action)
        fault = self.fault(t, w, action, raw) if action == "fault" else None
        expect = self.expectation(t, w) if action == "expect" else None
        page_size = self.get(t, w, "page_size", int, "an integer") or 0
        same_instance = self.get(t, w, "same_instance", bool, "true or false")
        listen = self.get(t, w, "listen", bool, "true or false")
        expect_phase = t.get("expect_phase")
        step = Step(
            index=number,
            line=line,
            action=action,
            subject=raw,
            at=at,
            user=self.text(t, w, "user"),
            context=self.text(t, w, "context"),
            prebuild=self.text(t, w, "prebuild"),
            idempotency_token=self.text(t, w, "idempotency_token") or "",
            expect_error=self.code(t, w, "expect_error"),
            expect_message=self.text(t, w, "expect_message"),
            same_as=self.text(t, w, "same_as"),
            same_instance=same_instance,
            listen=True if listen is None else listen,
            expect_phase=(
                None if expect_phase is None else self.phase(expect_phase, w, "expect_phase")
            ),
            page_size=page_size,
            all_pages=bool(self.get(t, w, "all_pages", bool, "true or false")),
            expect_count=self.get(t, w, "expect_count", int, "an integer"),
            expect_pages=self.get(t, w, "expect_pages", int, "an integer"),
            expect_workspaces=self.strings(t, w, "expect_workspaces"),
            shared=self.get(t, w, "shared", bool, "true or false") is not False,
            fault=fault,
            expect=expect,
            workspace=self.text(t, w, "workspace") if action == "call" else None,
            workspace_id=self.text(t, w, "workspace_id"),
            instance_id=self.text(t, w, "instance_id"),
            token=self.text(t, w, "token"),
            admin=bool(self.get(t, w, "admin", bool, "true or false")),
            reason=(self.text(t, w, "reason") or "workspace failed") if action == "fail" else "",
        )
        if action == "call" and raw not in WORKSPACES_METHODS:
            self.error(
                w, action, f"'call' must name an RPC ({', '.join(WORKSPACES_METHODS)}), got {raw!r}"
            )
        if action == "call" and step.admin and step.token is not None:
            self.error(w, "admin", "a call step takes 'admin' or 'token', not both")
        if action == "create" and not step.same_as and bool(step.context) == bool(step.prebuild):
            self.error(w, action, "a create step needs exactly one of 'context', 'prebuild'")
        if action == "list" and raw not in {u.id for u in sc.users}:
            self.error(w, action, f"'list' names user {raw!r}, which is not defined in [[users]]")
        return None if len(self.problems) > before else step

    def expectation(self, t: dict[str, Any], w: _Where) -> Expect | None:
        phases = None
        raw = self.get(t, w, "phases", list, "an array of phase names")
        if raw is not None:
            parsed = [self.phase(v, w, "phases") for v in raw]
            if all(p is not None for p in parsed):
                phases = tuple(p for p in parsed if p is not None)
                self.check_sequence(phases, w)
        phase = self.phase(t["phase"], w, "phase") if "phase" in t else None
        entered: list[tuple[Phase, Duration]] = []
        etable = self.get(t, w, "entered", dict, "an inline table of PHASE = time")
        for key, value in (etable or {}).items():
            p = self.phase(key, w, "entered")
            d = self.parse_duration(value, w, "entered") if isinstance(value, str) else None
            if not isinstance(value, str):
                self.error(
                    w, "entered", f"'entered' times must be strings such as \"87s\": {value!r}"
                )
            if p is not None and d is not None:
                entered.append((p, d))
        if phases is not None and entered:
            for p, _ in entered:
                if p not in phases:
                    self.error(
                        w,
                        "entered",
                        f"impossible expectation: 'entered' names {p.name},"
                        " which is not in 'phases'",
                    )
            order = [
                d
                for _, d in sorted(
                    entered, key=lambda e: phases.index(e[0]) if e[0] in phases else 0
                )
            ]
            if order != sorted(order):
                self.error(
                    w,
                    "entered",
                    "impossible expectation: 'entered' times must grow along the phase sequence",
                )
        if phase is not None and phases is not None and phases and phases[-1] is not phase:
            self.error(
                w,
                "phase",
                f"impossible expectation: 'phase' {phase.name} is not the last"
                f" of 'phases' ({phases[-1].name})",
            )
        admission = self.text(t, w, "admission")
        if admission is not None and admission not in ("EVERYONE", "OWNER_ONLY"):
            self.error(w, "admission", "'admission' must be EVERYONE or OWNER_ONLY")
        instance = self.get(t, w, "instance", int, "an integer >= 1")
        if instance is not None and instance < 1:
            self.error(w, "instance", "'instance' counts starts from 1")
        return Expect(
            instance=instance,
            phase=phase,
            phases=phases,
            failed=self.text(t, w, "failed"),
            timeout=self.text(t, w, "timeout"),
            message=self.text(t, w, "message"),
            stopped_by_request=self.get(t, w, "stopped_by_request", bool, "true or false"),
            admission=admission,
            entered=tuple(entered),
            log_tail=self.strings(t, w, "log_tail"),
            log_lines=self.get(t, w, "log_lines", int, "an integer"),
            log_contains=self.strings(t, w, "log_contains") or (),
        )

    def check_sequence(self, phases: tuple[Phase, ...], w: _Where) -> None:
        """A phase sequence must follow `transitions.is_legal` from the start."""
        if not phases:
            self.error(w, "phases", "impossible expectation: 'phases' is empty")
            return
        if phases[0] not in INITIAL_PHASES:
            first = " or ".join(sorted(p.name for p in INITIAL_PHASES))
            self.error(
                w,
                "phases",
                f"impossible expectation: an instance begins in {first}, not {phases[0].name}",
            )
            return
        for a, b in itertools.pairwise(phases):
            if a is b or not is_legal(a, b):
                if a is b:
                    why = "list each phase once in a row"
                else:
                    nxt = ", ".join(p.name for p in sorted(LEGAL_TRANSITIONS[a] - {a}))
                    why = f"after {a.name} comes one of: {nxt or 'nothing (terminal)'}"
                self.error(
                    w,
                    "phases",
                    f"impossible expectation: {a.name} -> {b.name} breaks the lifecycle; {why}",
                )
                return

    def references(
        self,
        step: Step,
        w: _Where,
        names: dict[str, int],
        users: set[str],
        prebuilds: set[str],
        fault_names: set[str],
        stopped: dict[str, int],
    ) -> None:
        """Names a step uses must be defined before it; no expectation after a known STOPPED."""
        a = step.action
        if step.user is not None and step.user not in users:
            self.error(
                w,
                "user",
                f"{step.describe()} names user {step.user!r}, which is not defined in [[users]]",
            )
        if step.prebuild is not None and step.prebuild not in prebuilds and not step.expect_error:
            self.error(
                w,
                "prebuild",
                f"{step.describe()} names prebuild {step.prebuild!r},"
                " which is not defined in [[prebuilds]]",
            )
        if a == "create":
            if step.same_as is not None and step.same_as not in names:
                self.error(
                    w,
                    "same_as",
                    f"{step.describe()}: 'same_as' names workspace"
                    f" {step.same_as!r}, which is not defined before this step",
                )
            if step.subject in names and step.expect_error is None:
                self.error(
                    w,
                    a,
                    f"workspace {step.subject!r} is already defined (line {names[step.subject]})",
                )
            if step.expect_error is None:
                names[step.subject] = step.line
                stopped.pop(step.subject, None)
            return
        if a == "fault" and step.fault is not None:
            if step.fault.name:
                fault_names.add(step.fault.name)
            if step.fault.target is TargetKind.WORKSPACE:
                self.workspace_ref(step.fault.target_value, w, "workspace", step, names)
            return
        if a == "clear_faults" and step.clear is not None:
            for n in step.clear:
                if n not in fault_names:
                    self.error(
                        w,
                        a,
                        f"{step.describe()} names fault {n!r}, which no fault before"
                        " it defines (give a fault a 'name')",
                    )
            return
        if a == "call":
            if step.workspace is not None:
                self.workspace_ref(step.workspace, w, "workspace", step, names)
            return
        if a in ("create", "list", "advance", "note", "clear_faults", "fault"):
            return
        if not self.workspace_ref(step.subject, w, a, step, names):
            return
        if a == "start" and step.expect_error is None:
            stopped.pop(step.subject, None)
        if a == "expect" and step.expect is not None:
            e = step.expect
            final = e.phase or (e.phases[-1] if e.phases else None)
            if (
                e.instance is None
                and step.subject in stopped
                and final not in (None, Phase.STOPPED)
            ):
                self.error(
                    w,
                    "phase" if e.phase else "phases",
                    "impossible expectation:"
                    f" workspace {step.subject!r} is already STOPPED (expected at line"
                    f" {stopped[step.subject]}) and nothing starts it again before"
                    " this step; expected STOPPED or a start step first",
                )
            if e.instance is None and final is Phase.STOPPED:
                key = "phase" if e.phase else "phases"
                stopped.setdefault(step.subject, self.src.line(w[0], w[1], key))

    def workspace_ref(
        self, name: str, w: _Where, key: str, step: Step, names: dict[str, int]
    ) -> bool:
        if name in names:
            return True
        self.error(
            w,
            key,
            f"{step.describe()} names workspace {name!r}, which is not defined;"
            " expected a [[workspaces]] entry or a create step before it",
        )
        return False


def step_duration(step: Step) -> Duration | None:
    try:
        return parse_duration(step.subject)
    except ValueError:
        return None


def _replace_timeout(t: Timeouts, name: str, value: Duration | None) -> Timeouts:
    from dataclasses import replace

    return replace(t, **{name: value})


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
