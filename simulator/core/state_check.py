"""The whole state document checked before an import replaces anything.

An import is all or nothing: :func:`check_document` walks every section (types, ranges from
:mod:`simulator.core.limits`, references between objects, unique ids and tokens, pending events
not in the past, counters ahead of the ids they hand out) and raises INVALID_ARGUMENT naming the
JSON path of the first problem (``$.instances[3].events.step``). Only a document that passes is
turned into an engine, so a hostile document can no longer leave a half-imported state, lasting
UNKNOWN errors or a dead clock.

Why hand-written rather than JSON Schema or pydantic: the checks that matter here are the ones
those cannot express (references between sections, token uniqueness, events not before ``now``),
and the ranges must be exactly the ones every other entry point uses (``limits``); a second
source of ranges in a schema file would drift. The walk is one pass over plain dicts, cheap next
to building the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from simulator.core import limits
from simulator.core.context_urls import ContextParseError, parse_context_url
from simulator.core.errors import InvalidArgument, SimError
from simulator.core.model import INSTANCE_URL
from simulator.core.patterns import compile_pattern
from simulator.core.plan import TIMED_PHASES, TIMEOUT_NAMES, BuildPolicy
from simulator.core.transitions import Phase

EVENT_SLOTS = (
    "step",
    "phase_timeout",
    "inactivity",
    "lifetime",
    "recover",
    "log",
    "interrupt",
    "startup",
)
_STATUS_KEYS = (
    "version",
    "phase",
    "url",
    "admission_everyone",
    "failed",
    "timeout",
    "message",
    "first_user_activity",
    "stopped_by_request",
)
_CONTEXT_KEYS = (
    "context_url",
    "kind",
    "normalized_url",
    "commit",
    "prebuild_id",
    "snapshot_id",
    "repository",
)
_BUILD_KEYS = ("lines", "pending", "started_at", "duration", "finished", "failed")
_MAX_COUNTER = 2**63 - 1
_MAX_LOG_LINE = 64 * 1024
_SEQ_ID = re.compile(r"(?:plan|fault)-([0-9]{1,19})")
_PHASE_NAMES = {p.name for p in Phase if p is not Phase.UNSPECIFIED}


class _Problem(Exception):
    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what


def check_document(data: Any, rng_names: tuple[str, ...]) -> None:
    """Refuse, naming the JSON path, anything in ``data`` that an import must not accept."""
    try:
        _Checker(data, rng_names).run()
    except _Problem as p:
        raise InvalidArgument(f"{p.path}: {p.what}") from None


class _Checker:
    def __init__(self, data: Any, rng_names: tuple[str, ...]) -> None:
        self.data = data
        self.rng_names = rng_names

    # ------------------------------------------------------------------ primitives

    def obj(
        self, path: str, value: Any, keys: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _Problem(path, f"expected an object, got {_kind(value)}")
        missing = [k for k in keys if k not in value]
        if missing:
            raise _Problem(path, f"missing {', '.join(repr(k) for k in missing)}")
        extra = sorted(set(value) - set(keys) - set(optional))
        if extra:
            raise _Problem(path, f"unknown key {extra[0]!r}")
        return value

    def array(self, path: str, value: Any, maximum: int = 10_000_000) -> list[Any]:
        if not isinstance(value, list):
            raise _Problem(path, f"expected an array, got {_kind(value)}")
        if len(value) > maximum:
            raise _Problem(path, f"{len(value)} items (at most {maximum})")
        return value

    def integer(self, path: str, value: Any, lo: int = 0, hi: int = _MAX_COUNTER) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Problem(path, f"expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise _Problem(path, f"{value} is out of range: {lo} .. {hi}")
        return value

    def string(self, path: str, value: Any, maximum: int = limits.MAX_CONTEXT_URL) -> str:
        if not isinstance(value, str):
            raise _Problem(path, f"expected a string, got {_kind(value)}")
        if len(value) > maximum:
            raise _Problem(path, f"{len(value)} characters (at most {maximum})")
        return value

    def boolean(self, path: str, value: Any, nullable: bool = False) -> None:
        if not (isinstance(value, bool) or (nullable and value is None)):
            raise _Problem(path, f"expected true or false, got {_kind(value)}")

    def limit(self, path: str, check: Callable[..., object], *args: Any) -> Any:
        try:
            return check(*args)
        except SimError as exc:
            raise _Problem(path, exc.message) from None
        except ContextParseError as exc:
            raise _Problem(path, str(exc)) from None

    def instant(self, path: str, value: Any, *, nullable: bool = False) -> int | None:
        if value is None and nullable:
            return None
        return int(self.limit(path, limits.event_instant, path.rsplit(".", 1)[-1], value))

    def duration(self, path: str, value: Any, *, nullable: bool = False) -> int | None:
        if value is None and nullable:
            return None
        return int(self.limit(path, limits.duration, path.rsplit(".", 1)[-1], value))

    def rng(self, path: str, value: Any) -> None:
        state = self.array(path, value, 3)
        if len(state) != 3:
            raise _Problem(path, "expected [version, state, gauss]")
        self.integer(f"{path}[0]", state[0], 3, 3)
        words = self.array(f"{path}[1]", state[1], 625)
        if len(words) != 625:
            raise _Problem(f"{path}[1]", "expected 625 integers (a Mersenne Twister state)")
        if not all(type(w) is int and 0 <= w < 2**32 for w in words[:624]):  # fast path first
            for n, word in enumerate(words[:624]):
                self.integer(f"{path}[1][{n}]", word, 0, 2**32 - 1)
        self.integer(f"{path}[1][624]", words[624], 0, 624)
        if state[2] is not None and not isinstance(state[2], float):
            raise _Problem(f"{path}[2]", "expected null or a number")

    # ------------------------------------------------------------------ the document

    def run(self) -> None:
        d = self.obj(
            "$",
            self.data,
            (
                "format", "version", "seed", "now", "plan", "scoped_plans", "rngs", "counters",
                "users", "prebuilds", "workspaces", "instances", "plans", "image_cache",
                "idempotency", "faults",
            ),
            ("clock",),
        )  # fmt: skip
        self.limit("$.seed", limits.seed, d["seed"])
        self.now = int(self.limit("$.now", limits.instant, "now", d["now"]))
        plans = self.array("$.plans", d["plans"], 100_000)
        if not plans:
            raise _Problem("$.plans", "expected at least one plan")
        for n, plan in enumerate(plans):
            self.plan(f"$.plans[{n}]", plan)
        self.plan_count = len(plans)
        self.plan_ref("$.plan", d["plan"])
        rngs = self.obj("$.rngs", d["rngs"], self.rng_names)
        for name in self.rng_names:
            self.rng(f"$.rngs.{name}", rngs[name])
        counters = self.obj(
            "$.counters", d["counters"], ("workspace_seq", "plan_seq", "wake_seq", "scheduler_seq")
        )
        for key, value in counters.items():
            self.integer(f"$.counters.{key}", value)
        self.users(d["users"])
        self.scoped_plans(d["scoped_plans"], counters["plan_seq"])
        self.prebuilds(d["prebuilds"])
        self.workspace_ids = self.ids("$.workspaces", d["workspaces"])
        self.instance_ids = self.ids("$.instances", d["instances"])
        self.workspaces(d["workspaces"], counters["workspace_seq"])
        self.instances(d["instances"], counters["scheduler_seq"])
        for n, repo in enumerate(self.array("$.image_cache", d["image_cache"])):
            self.string(f"$.image_cache[{n}]", repo)
        self.idempotency(d["idempotency"])
        self.faults(d["faults"])

    def plan_ref(self, path: str, value: Any) -> None:
        self.integer(path, value, 0, self.plan_count - 1)

    def plan(self, path: str, plan: Any) -> None:
        from simulator.core.state import plan_from_json  # the constructors check the ranges

        p = self.obj(
            path, plan, ("durations", "build_policy", "timeouts", "cluster", "build_log_lines")
        )
        durations = p["durations"]
        if not isinstance(durations, dict):
            raise _Problem(f"{path}.durations", f"expected an object, got {_kind(durations)}")
        timed = {phase.name for phase in TIMED_PHASES}
        for name, dist in durations.items():
            where = f"{path}.durations.{name}"
            if name not in timed:
                raise _Problem(where, f"not a phase with a duration ({', '.join(sorted(timed))})")
            self.distribution(where, dist)
        if p["build_policy"] not in [b.value for b in BuildPolicy]:
            raise _Problem(f"{path}.build_policy", f"unknown build policy {p['build_policy']!r}")
        timeouts = self.obj(f"{path}.timeouts", p["timeouts"], TIMEOUT_NAMES)
        for name in TIMEOUT_NAMES:
            self.duration(f"{path}.timeouts.{name}", timeouts[name], nullable=True)
        self.string(f"{path}.cluster", p["cluster"], 63)
        self.integer(f"{path}.build_log_lines", p["build_log_lines"], 1, limits.MAX_BUILD_LOG_LINES)
        self.limit(path, plan_from_json, p)

    def distribution(self, path: str, dist: Any) -> None:
        if not isinstance(dist, dict) or len(dist) != 1:
            raise _Problem(path, "expected one of {fixed}, {uniform}, {lognormal}")
        ((kind, value),) = dist.items()
        if kind == "fixed":
            self.duration(f"{path}.fixed", value)
        elif kind == "uniform":
            pair = self.array(f"{path}.uniform", value, 2)
            if len(pair) != 2:
                raise _Problem(f"{path}.uniform", "expected [low, high]")
            self.duration(f"{path}.uniform[0]", pair[0])
            self.duration(f"{path}.uniform[1]", pair[1])
        elif kind == "lognormal":
            triple = self.array(f"{path}.lognormal", value, 3)
            if len(triple) != 3:
                raise _Problem(f"{path}.lognormal", "expected [median, sigma, cap]")
            self.duration(f"{path}.lognormal[0]", triple[0])
            self.limit(f"{path}.lognormal[1]", limits.sigma, triple[1])
            self.duration(f"{path}.lognormal[2]", triple[2], nullable=True)
        else:
            raise _Problem(path, f"unknown distribution {kind!r}")

    def ids(self, path: str, items: Any) -> set[str]:
        seen: set[str] = set()
        for n, item in enumerate(self.array(path, items)):
            if not isinstance(item, dict) or "id" not in item:
                raise _Problem(f"{path}[{n}]", "expected an object with an 'id'")
            ident = self.limit(f"{path}[{n}].id", limits.name, "id", item["id"])
            if ident in seen:
                raise _Problem(f"{path}[{n}].id", f"{ident!r} appears twice")
            seen.add(ident)
        return seen

    def users(self, users: Any) -> None:
        self.user_ids = self.ids("$.users", users)
        tokens: set[str] = set()
        for n, user in enumerate(users):
            self.obj(f"$.users[{n}]", user, ("id", "token"))
            token = self.limit(f"$.users[{n}].token", limits.token, "token", user["token"])
            if token in tokens:
                raise _Problem(f"$.users[{n}].token", "two users share one token")
            tokens.add(token)
        self.tokens = tokens

    def scoped_plans(self, scoped: Any, plan_seq: int) -> None:
        self.ids("$.scoped_plans", scoped)
        for n, item in enumerate(scoped):
            path = f"$.scoped_plans[{n}]"
            self.obj(path, item, ("id", "scope", "value", "plan"))
            self.seq_id(f"{path}.id", item["id"], "plan", plan_seq, "$.counters.plan_seq")
            scope, value = item["scope"], self.string(f"{path}.value", item["value"])
            if scope == "user" and value not in self.user_ids:
                raise _Problem(f"{path}.value", f"user {value!r} is not in $.users")
            if scope == "context":
                self.limit(f"{path}.value", compile_pattern, value)
            elif scope not in ("global", "user"):
                raise _Problem(f"{path}.scope", f"unknown scope {scope!r}")
            self.plan_ref(f"{path}.plan", item["plan"])

    def seq_id(self, path: str, ident: str, prefix: str, seq: int, counter: str) -> None:
        match = _SEQ_ID.fullmatch(ident)
        if match is None or not ident.startswith(prefix):
            raise _Problem(path, f"expected {prefix}-N, got {ident!r}")
        if int(match.group(1)) > seq:
            raise _Problem(path, f"{ident!r} is ahead of {counter} ({seq}): ids would repeat")

    def prebuilds(self, prebuilds: Any) -> None:
        self.prebuild_ids = self.ids("$.prebuilds", prebuilds)
        for n, item in enumerate(prebuilds):
            path = f"$.prebuilds[{n}]"
            self.obj(path, item, ("id", "context_url", "commit"))
            url = self.string(f"{path}.context_url", item["context_url"])
            self.limit(f"{path}.context_url", parse_context_url, url)
            commit = self.string(f"{path}.commit", item["commit"], 40)
            if not re.fullmatch(r"[0-9a-f]{40}", commit):
                raise _Problem(f"{path}.commit", "expected 40 lower-case hex characters")

    def workspaces(self, workspaces: list[Any], workspace_seq: int) -> None:
        self.owner_of: dict[str, str] = {}
        self.active_of: dict[str, Any] = {}
        for n, ws in enumerate(workspaces):
            path = f"$.workspaces[{n}]"
            self.obj(
                path,
                ws,
                (
                    "id", "owner_id", "context", "description", "created_at", "seq", "shared",
                    "latest_instance_id", "active_instance_id", "last_activity_at",
                ),
            )  # fmt: skip
            if ws["owner_id"] not in self.user_ids:
                raise _Problem(f"{path}.owner_id", f"user {ws['owner_id']!r} is not in $.users")
            context = self.obj(f"{path}.context", ws["context"], _CONTEXT_KEYS)
            for key in _CONTEXT_KEYS:
                self.string(f"{path}.context.{key}", context[key])
            if context["kind"] not in ("git", "prebuild", "snapshot"):
                raise _Problem(f"{path}.context.kind", f"unknown kind {context['kind']!r}")
            self.string(f"{path}.description", ws["description"])
            created = self.instant(f"{path}.created_at", ws["created_at"])
            if created is not None and created > self.now:
                raise _Problem(f"{path}.created_at", "after $.now")
            self.integer(f"{path}.seq", ws["seq"], 0, workspace_seq)
            self.boolean(f"{path}.shared", ws["shared"])
            self.instant(f"{path}.last_activity_at", ws["last_activity_at"])
            for key in ("latest_instance_id", "active_instance_id"):
                ref = ws[key]
                if ref is not None and ref not in self.instance_ids:
                    raise _Problem(f"{path}.{key}", f"instance {ref!r} is not in $.instances")
            self.owner_of[ws["id"]] = ws["owner_id"]
            self.active_of[ws["id"]] = ws["active_instance_id"]

    def instances(self, instances: list[Any], scheduler_seq: int) -> None:
        seqs: set[int] = set()
        self.instance_owner: dict[str, str] = {}
        for n, inst in enumerate(instances):
            path = f"$.instances[{n}]"
            self.obj(
                path,
                inst,
                (
                    "id", "workspace_id", "owner_id", "owner_token", "created_at", "status",
                    "plan", "repository", "phase_started_at", "running_at", "stopped_at",
                    "last_activity", "timeout_ref", "build", "events", "faults",
                ),
            )  # fmt: skip
            ws = inst["workspace_id"]
            if ws not in self.owner_of:
                raise _Problem(f"{path}.workspace_id", f"workspace {ws!r} is not in $.workspaces")
            if inst["owner_id"] != self.owner_of[ws]:
                raise _Problem(f"{path}.owner_id", f"not the owner of workspace {ws!r}")
            self.limit(f"{path}.owner_token", limits.token, "token", inst["owner_token"])
            for key in ("created_at", "phase_started_at"):
                at = self.instant(f"{path}.{key}", inst[key])
                if at is not None and at > self.now:
                    raise _Problem(f"{path}.{key}", "after $.now")
            for key in ("running_at", "stopped_at", "last_activity"):
                self.instant(f"{path}.{key}", inst[key], nullable=True)
            status = self.obj(f"{path}.status", inst["status"], _STATUS_KEYS)
            self.status(f"{path}.status", status, ws)
            if status["phase"] == "STOPPED" and self.active_of.get(ws) == inst["id"]:
                raise _Problem(f"{path}.status.phase", f"STOPPED but the active instance of {ws!r}")
            self.plan_ref(f"{path}.plan", inst["plan"])
            self.string(f"{path}.repository", inst["repository"])
            self.integer(f"{path}.timeout_ref", inst["timeout_ref"], -_MAX_COUNTER, _MAX_COUNTER)
            if inst["build"] is not None:
                self.build(f"{path}.build", inst["build"])
            events = inst["events"]
            if not isinstance(events, dict):
                raise _Problem(f"{path}.events", f"expected an object, got {_kind(events)}")
            for slot, event in events.items():
                where = f"{path}.events.{slot}"
                if slot not in EVENT_SLOTS:
                    raise _Problem(where, f"unknown event slot (expected {', '.join(EVENT_SLOTS)})")
                pair = self.array(where, event, 2)
                if len(pair) != 2:
                    raise _Problem(where, "expected [at, seq]")
                at = self.instant(f"{where}[0]", pair[0])
                if at is not None and at < self.now:
                    raise _Problem(f"{where}[0]", "an event in the past (before $.now)")
                seq = self.integer(f"{where}[1]", pair[1], 1, scheduler_seq)
                if seq in seqs:
                    raise _Problem(f"{where}[1]", f"schedule order {seq} is used twice")
                seqs.add(seq)
            self.array(f"{path}.faults", inst["faults"], 10_000)
            self.instance_owner[inst["id"]] = inst["owner_id"]
        self.instance_faults = [(n, inst["faults"]) for n, inst in enumerate(instances)]

    def status(self, path: str, status: dict[str, Any], workspace_id: str) -> None:
        self.integer(f"{path}.version", status["version"])
        if status["phase"] not in _PHASE_NAMES:
            raise _Problem(f"{path}.phase", f"unknown phase {status['phase']!r}")
        for key in ("url", "failed", "timeout", "message"):
            self.string(f"{path}.{key}", status[key])
        url = INSTANCE_URL.fullmatch(status["url"])
        if url is None:
            raise _Problem(
                f"{path}.url",
                f"{status['url']!r} is not an instance URL"
                " (https://<workspace id>.ws-<cluster>.gitpod.io)",
            )
        if url["workspace_id"] != workspace_id:  # the status keeps the id, not the URL
            raise _Problem(f"{path}.url", f"not a URL of workspace {workspace_id!r}")
        self.boolean(f"{path}.admission_everyone", status["admission_everyone"])
        self.boolean(f"{path}.stopped_by_request", status["stopped_by_request"], nullable=True)
        self.instant(f"{path}.first_user_activity", status["first_user_activity"], nullable=True)

    def build(self, path: str, build: Any) -> None:
        b = self.obj(path, build, _BUILD_KEYS)
        for key in ("lines", "pending"):
            lines = self.array(f"{path}.{key}", b[key], limits.MAX_BUILD_LOG_LINES + 16)
            if not all(type(line) is str and len(line) <= _MAX_LOG_LINE for line in lines):
                for n, line in enumerate(lines):
                    self.string(f"{path}.{key}[{n}]", line, _MAX_LOG_LINE)
        self.instant(f"{path}.started_at", b["started_at"])
        self.duration(f"{path}.duration", b["duration"])
        self.boolean(f"{path}.finished", b["finished"])
        self.boolean(f"{path}.failed", b["failed"])

    def idempotency(self, records: Any) -> None:
        for n, record in enumerate(self.array("$.idempotency", records)):
            path = f"$.idempotency[{n}]"
            self.obj(path, record, ("key", "fingerprint", "result"))
            key = self.array(f"{path}.key", record["key"], 3)
            if len(key) != 3:
                raise _Problem(f"{path}.key", "expected [user_id, method, token]")
            for m, part in enumerate(key):
                self.string(f"{path}.key[{m}]", part, limits.MAX_NAME)
            if key[0] not in self.user_ids:
                raise _Problem(f"{path}.key[0]", f"user {key[0]!r} is not in $.users")
            for m, part in enumerate(self.array(f"{path}.fingerprint", record["fingerprint"], 8)):
                self.string(f"{path}.fingerprint[{m}]", part)
            result = self.string(f"{path}.result", record["result"], limits.MAX_NAME)
            if result not in self.workspace_ids and result not in self.instance_ids:
                raise _Problem(
                    f"{path}.result", f"{result!r} is neither a workspace nor an instance"
                )

    def faults(self, book: Any) -> None:
        from simulator.core.faults import (
            Target,
            TargetKind,
            effect_from_json,
            validate_effect,
        )

        b = self.obj("$.faults", book, ("seq", "rng", "items"))
        seq = self.integer("$.faults.seq", b["seq"])
        self.rng("$.faults.rng", b["rng"])
        fault_ids = self.ids("$.faults.items", b["items"])
        kinds = [k.value for k in TargetKind]
        for n, f in enumerate(b["items"]):
            path = f"$.faults.items[{n}]"
            self.obj(
                path,
                f,
                (
                    "id",
                    "effect",
                    "target",
                    "count",
                    "active_from",
                    "active_until",
                    "times_applied",
                    "instances",
                ),
                ("skip", "skipped"),
            )
            self.seq_id(f"{path}.id", f["id"], "fault", seq, "$.faults.seq")
            effect = self.limit(f"{path}.effect", _effect, effect_from_json, f["effect"])
            self.limit(f"{path}.effect", validate_effect, effect)
            target = self.obj(f"{path}.target", f["target"], ("kind", "value"))
            if target["kind"] not in kinds:
                raise _Problem(f"{path}.target.kind", f"unknown target {target['kind']!r}")
            value = self.string(f"{path}.target.value", target["value"])
            kind = TargetKind(target["kind"])
            if kind is TargetKind.WORKSPACE and value not in self.workspace_ids:
                raise _Problem(
                    f"{path}.target.value", f"workspace {value!r} is not in $.workspaces"
                )
            if kind is TargetKind.INSTANCE and value not in self.instance_ids:
                raise _Problem(f"{path}.target.value", f"instance {value!r} is not in $.instances")
            for key in ("count", "times_applied", "skip", "skipped"):
                if key in f:
                    self.integer(f"{path}.{key}", f[key], 0, limits.MAX_COUNT)
            for key in ("active_from", "active_until"):
                self.instant(f"{path}.{key}", f[key], nullable=True)
            bound = self.array(f"{path}.instances", f["instances"], 1_000_000)
            for m, iid in enumerate(bound):
                if iid not in self.instance_ids:
                    raise _Problem(
                        f"{path}.instances[{m}]", f"instance {iid!r} is not in $.instances"
                    )
            self.limit(path, _fault, f, effect, Target.of(kind, value))
        for n, ids in self.instance_faults:
            for m, fid in enumerate(ids):
                if fid not in fault_ids:
                    raise _Problem(
                        f"$.instances[{n}].faults[{m}]", f"fault {fid!r} is not in $.faults.items"
                    )


def _fault(f: dict[str, Any], effect: Any, target: Any) -> Any:
    from simulator.core.faults import Fault

    return Fault(
        f["id"],
        effect,
        target,
        count=f["count"],
        active_from=f["active_from"],
        active_until=f["active_until"],
        times_applied=f["times_applied"],
    )


def _effect(effect_from_json: Callable[[Any], Any], data: Any) -> Any:
    if not isinstance(data, dict):
        raise InvalidArgument(f"expected an object, got {_kind(data)}")
    try:
        return effect_from_json(data)
    except SimError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InvalidArgument(f"malformed effect: {type(exc).__name__}: {exc}") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip
