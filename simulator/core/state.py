"""The whole engine state as JSON, and back.

Everything that decides future answers is saved: users, prebuilds, workspaces, instances with
their statuses, builds and pending events (with their schedule order), image cache, idempotency
records, plans, faults, and the state of every seeded random stream. So an export, a new process
and an import give the same answers as the original would have. Not saved: ListWorkspaces page
tokens (a token from before an import is INVALID_ARGUMENT after it) and timers of calls in flight.

JSON, not pickle: an import over the control plane must not be able to run code.
"""

from __future__ import annotations

from typing import Any

from simulator.core.context_urls import parse_context_url
from simulator.core.engine import Engine, Observer
from simulator.core.errors import InvalidArgument, SimError
from simulator.core.fault_book import FaultBook
from simulator.core.model import (
    INSTANCE_URL,
    Instance,
    InstanceStatus,
    Prebuild,
    Workspace,
    WorkspaceContext,
)
from simulator.core.plan import (
    TIMEOUT_NAMES,
    BuildPolicy,
    Distribution,
    Fixed,
    LifecyclePlan,
    LogNormal,
    Timeouts,
    Uniform,
)
from simulator.core.scheduler import TIMER_EVENTS, EventKind
from simulator.core.state_check import check_document
from simulator.core.transitions import Phase, Timer

FORMAT = "gitpod-sim-state"
VERSION = 2
"""The document's ``version``; older ones are upgraded on import (:func:`upgrade`).
2 added the image_build limit and the startup timer of its own (counted from PENDING).
1 came in two shapes: before the fault registry (a list of faults, ``fail-phase`` with a phase,
the fault stream among ``rngs``) and after it (faults as one book, kinds by their one name)."""
READS = (1, 2)
_FAIL_KINDS = {
    "IMAGEBUILD": "fail-image-build",
    "CREATING": "fail-creating",
    "INITIALIZING": "fail-initializing",
}
_EVENT_SLOTS = tuple(timer.value for timer in Timer)

Json = dict[str, Any]


# ---------------------------------------------------------------------------- plans


def _dist_to_json(dist: Distribution) -> Json:
    if isinstance(dist, Fixed):
        return {"fixed": dist.duration}
    if isinstance(dist, Uniform):
        return {"uniform": [dist.low, dist.high]}
    return {"lognormal": [dist.median, dist.sigma, dist.cap]}


def _dist_from_json(data: Json) -> Distribution:
    if "fixed" in data:
        return Fixed(int(data["fixed"]))
    if "uniform" in data:
        low, high = data["uniform"]
        return Uniform(int(low), int(high))
    median, sigma, cap = data["lognormal"]
    return LogNormal(int(median), float(sigma), None if cap is None else int(cap))


def plan_to_json(plan: LifecyclePlan) -> Json:
    return {
        "durations": {phase.name: _dist_to_json(d) for phase, d in plan.durations.items()},
        "build_policy": plan.build_policy.value,
        "timeouts": {name: getattr(plan.timeouts, name) for name in TIMEOUT_NAMES},
        "cluster": plan.cluster,
        "build_log_lines": plan.build_log_lines,
    }


def plan_from_json(data: Json) -> LifecyclePlan:
    return LifecyclePlan(
        durations={Phase[name]: _dist_from_json(d) for name, d in data["durations"].items()},
        build_policy=BuildPolicy(data["build_policy"]),
        timeouts=Timeouts(**{name: data["timeouts"][name] for name in TIMEOUT_NAMES}),
        cluster=data["cluster"],
        build_log_lines=int(data["build_log_lines"]),
    )


# ---------------------------------------------------------------------------- engine


def _status_to_json(status: InstanceStatus) -> Json:
    data: Json = {"version": status.version, "phase": status.phase.name, "url": status.url}
    data.update(zip(InstanceStatus._fields[4:], status[4:], strict=True))  # after the URL parts
    return data


def _status_from_json(data: Json) -> InstanceStatus:
    fields = dict(data)
    fields["phase"] = Phase[fields["phase"]]
    parts = INSTANCE_URL.fullmatch(fields.pop("url"))
    assert parts is not None, "state_check lets only instance URLs through"
    return InstanceStatus(**fields, workspace_id=parts["workspace_id"], cluster=parts["cluster"])


def export_state(engine: Engine) -> Json:
    """The engine's whole state as JSON-ready data."""
    plans: list[Json] = []
    plan_ids: dict[int, int] = {}

    def plan_ref(plan: LifecyclePlan) -> int:
        key = id(plan)
        if key not in plan_ids:
            plan_ids[key] = len(plans)
            plans.append(plan_to_json(plan))
        return plan_ids[key]

    instances = []
    for inst in engine.instances.values():
        build = inst.build
        instances.append(
            {
                "id": inst.id,
                "workspace_id": inst.workspace_id,
                "owner_id": inst.owner_id,
                "owner_token": inst.owner_token,
                "created_at": inst.created_at,
                "status": _status_to_json(inst.status),
                "plan": plan_ref(inst.plan),
                "repository": inst.repository,
                "phase_started_at": inst.phase_started_at,
                "running_at": inst.running_at,
                "stopped_at": inst.stopped_at,
                "last_activity": inst.last_activity,
                "timeout_ref": inst.timeout_ref,
                "build": None
                if build is None
                else {
                    "lines": build.lines,
                    "pending": build.pending,
                    "started_at": build.started_at,
                    "duration": build.duration,
                    "finished": build.finished,
                    "failed": build.failed,
                },
                "events": {
                    slot: [event.at, event.seq]
                    for slot in _EVENT_SLOTS
                    if (event := getattr(inst, slot)) is not None and not event.cancelled
                },
                "faults": list(inst.faults),
            }
        )
    scopes = engine.plans.save(plan_ref)  # after the instances: plan refs keep their old order
    return {
        "format": FORMAT,
        "version": VERSION,
        "seed": engine.seed,
        "now": engine.now,
        "plan": scopes["plan"],
        "scoped_plans": scopes["scoped_plans"],
        "rngs": engine.random.save(),
        "counters": {
            "workspace_seq": engine.workspace_seq,
            "plan_seq": scopes["plan_seq"],
            "wake_seq": engine.wakes.seq,
            "scheduler_seq": engine.scheduler.counter,
        },
        "users": [{"id": u.id, "token": u.token} for u in engine.users.values()],
        "prebuilds": [
            {"id": p.id, "context_url": p.context.original, "commit": p.commit}
            for p in engine.prebuilds.values()
        ],
        "workspaces": [
            {
                "id": ws.id,
                "owner_id": ws.owner_id,
                "context": {
                    "context_url": ws.context.context_url,
                    "kind": ws.context.kind,
                    "normalized_url": ws.context.normalized_url,
                    "commit": ws.context.commit,
                    "prebuild_id": ws.context.prebuild_id,
                    "snapshot_id": ws.context.snapshot_id,
                    "repository": ws.context.repository,
                },
                "description": ws.description,
                "created_at": ws.created_at,
                "seq": ws.seq,
                "shared": ws.shared,
                "latest_instance_id": ws.latest_instance_id,
                "active_instance_id": ws.active_instance_id,
                "last_activity_at": ws.last_activity_at,
            }
            for ws in engine.workspaces.values()
        ],
        "instances": instances,
        "plans": plans,
        "image_cache": sorted(engine.image_cache),
        "idempotency": engine.idempotency.save(),
        "faults": engine.faults.to_json(),
    }


def import_state(data: Json, observer: Observer | None = None) -> Engine:
    """A new engine holding ``data`` (from :func:`export_state`); bad data is INVALID_ARGUMENT."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidArgument(f"not a {FORMAT} document")
    data = upgrade(data)
    check_document(data, tuple(Engine(seed=0).random.save()))  # the whole document first
    try:
        return _import(data, observer)
    except InvalidArgument:
        raise
    except SimError as exc:  # e.g. a user twice
        raise InvalidArgument(f"malformed state: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InvalidArgument(f"malformed state: {type(exc).__name__}: {exc}") from None


def upgrade(data: Json) -> Json:
    """A document of any version this one reads, in today's shape (a new dict; ``data`` is left
    as it is). Another version is INVALID_ARGUMENT saying which versions are read."""
    version = data.get("version")
    if type(version) is not int or version not in READS:
        newer = type(version) is int and version > VERSION
        raise InvalidArgument(
            f"$.version: state version {version!r} is not one this gitpod-sim reads"
            f" ({', '.join(map(str, READS))})"
            + ("; it was written by a newer gitpod-sim" if newer else "")
        )
    if version == 1 and isinstance(data.get("faults"), list):
        data = _upgrade_v1_faults(data)
    if version == 1:
        data = _upgrade_v1(data)
    return {**data, "version": VERSION}


def _upgrade_v1_faults(data: Json) -> Json:
    """Version 1 before the fault registry: the faults' list, counter and random stream become
    one book; ``fail-phase`` + phase becomes fail-image-build, fail-creating or
    fail-initializing. What does not have the old shape is left for the check to name."""
    rngs, counters = data.get("rngs"), data.get("counters")
    if not (isinstance(rngs, dict) and "_rng_faults" in rngs and isinstance(counters, dict)):
        return data
    rngs, counters = dict(rngs), dict(counters)
    items = []
    for item in data["faults"]:
        effect = item.get("effect") if isinstance(item, dict) else None
        if isinstance(effect, dict) and effect.get("type") == "fail-phase":
            effect = dict(effect)
            phase = effect.pop("phase", None)
            effect["type"] = _FAIL_KINDS.get(phase, f"fail-phase {phase}")
            if effect["type"] != "fail-image-build":
                effect.pop("log_tail", None)  # only a build failure shows log lines now
            item = {**item, "effect": effect}
        items.append(item)
    book = {"seq": counters.pop("fault_seq", 0), "rng": rngs.pop("_rng_faults"), "items": items}
    return {**data, "rngs": rngs, "counters": counters, "faults": book}


def _upgrade_v1(data: Json) -> Json:
    """A version-1 document as version 2 (a copy where it differs; what is malformed is left for
    the check to name). Every plan gets the image_build limit's default; a CREATING or
    INITIALIZING instance's phase timeout (the startup limit in version 1, counted from CREATING)
    becomes its startup timer. Pending events are not added: an instance saved in IMAGEBUILD or
    PENDING keeps the timers it had."""
    out = {**data, "version": 2}
    plans = data.get("plans")
    if isinstance(plans, list):
        out["plans"] = [
            {**p, "timeouts": {**p["timeouts"], "image_build": Timeouts().image_build}}
            if isinstance(p, dict)
            and isinstance(p.get("timeouts"), dict)
            and "image_build" not in p["timeouts"]
            else p
            for p in plans
        ]
    instances = data.get("instances")
    if isinstance(instances, list):
        upgraded = []
        for inst in instances:
            status, events = (
                (inst.get("status"), inst.get("events")) if isinstance(inst, dict) else (None, None)
            )
            if (
                isinstance(status, dict)
                and status.get("phase") in ("CREATING", "INITIALIZING")
                and isinstance(events, dict)
                and "phase_timeout" in events
                and "startup" not in events
            ):
                events = {k: v for k, v in events.items() if k != "phase_timeout"}
                inst = {**inst, "events": {**events, "startup": inst["events"]["phase_timeout"]}}
            upgraded.append(inst)
        out["instances"] = upgraded
    return out


def _import(data: Json, observer: Observer | None) -> Engine:
    plans = [plan_from_json(p) for p in data["plans"]]
    engine = Engine(seed=int(data["seed"]), start_time=int(data["now"]), plan=plans[data["plan"]])
    engine.random.restore(data["rngs"])
    counters = data["counters"]
    engine.workspace_seq = int(counters["workspace_seq"])
    engine.wakes.seq = int(counters["wake_seq"])
    engine.plans.restore(
        {
            "plan": data["plan"],
            "scoped_plans": data["scoped_plans"],
            "plan_seq": counters["plan_seq"],
        },
        plans,
    )
    for user in data["users"]:
        engine.add_user(user["id"], user["token"])
    for prebuild in data["prebuilds"]:
        engine.prebuilds[prebuild["id"]] = Prebuild(
            prebuild["id"], parse_context_url(prebuild["context_url"]), prebuild["commit"]
        )
    for w in data["workspaces"]:
        ws = Workspace(
            id=w["id"],
            owner_id=w["owner_id"],
            context=WorkspaceContext(**w["context"]),
            description=w["description"],
            created_at=int(w["created_at"]),
            seq=int(w["seq"]),
            shared=bool(w["shared"]),
            latest_instance_id=w["latest_instance_id"],
            active_instance_id=w["active_instance_id"],
            last_activity_at=int(w["last_activity_at"]),
        )
        engine.restore_workspace(ws)
    pending: list[tuple[int, int, EventKind, Instance, str]] = []
    for i in data["instances"]:
        b = i["build"]
        inst = Instance(
            id=i["id"],
            owner_id=i["owner_id"],
            owner_secret=i["owner_token"],
            created_at=int(i["created_at"]),
            status=_status_from_json(i["status"]),
            plan=plans[i["plan"]],
            repository=i["repository"],
            phase_started_at=int(i["phase_started_at"]),
            running_at=i["running_at"],
            stopped_at=i["stopped_at"],
            last_activity=i["last_activity"],
            timeout_ref=int(i["timeout_ref"]),
            build=None if b is None else engine.builds.restore(**b),
            faults=tuple(i["faults"]),
        )
        engine.instances[inst.id] = inst
        for slot, (at, seq) in i["events"].items():
            pending.append((int(seq), int(at), _slot_kind(slot), inst, slot))
    # Re-create pending events in their original schedule order, then restore the counter, so
    # events due at the same instant still fire in the order they would have.
    for seq, at, kind, inst, slot in sorted(pending, key=lambda p: p[0]):
        setattr(inst, slot, engine.scheduler.schedule_as(at, seq, kind, inst.id))
    engine.scheduler.restore(int(counters["scheduler_seq"]))
    engine.image_cache.clear()  # the builds part holds the same set
    engine.image_cache.update(data["image_cache"])
    engine.idempotency.restore(data["idempotency"])
    engine.replace_faults(FaultBook.from_json(data["faults"], engine.seed))
    engine.observer = observer
    return engine


def _slot_kind(slot: str) -> EventKind:
    return TIMER_EVENTS[Timer(slot)]
