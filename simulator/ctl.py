"""``gitpod-sim ctl``: steer a running simulator through its control service.

Every command is one call of gitpod.simulator.v1.SimulatorService. A refused or bad request exits
with code 1 and the server's message on stderr; a usage error exits with 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.errors import InvalidArgument
from simulator.core.faults import FAULT_KINDS, FAULT_NAMES, KINDS, Param, ParamType, status_name
from simulator.core.simtime import (
    SimTime,
    format_instant,
    from_datetime,
    parse_duration,
    parse_instant,
)
from simulator.core.transitions import Phase
from simulator.server.control_convert import effect_message
from simulator.server.convert import phase_pb

T = TypeVar("T")
_MODES = {
    "manual": spb.ClockMode.MANUAL,
    "realtime": spb.ClockMode.REALTIME,
    "autojump": spb.ClockMode.AUTOJUMP,
}
_BUILD = {
    "first-start": spb.BuildPolicy.FIRST_START,
    "always": spb.BuildPolicy.ALWAYS,
    "never": spb.BuildPolicy.NEVER,
}


def _td(text: str, what: str) -> dt.timedelta:
    try:
        return dt.timedelta(microseconds=parse_duration(text))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


def _ts(text: str | None, what: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return dt.datetime.fromtimestamp(parse_instant(text) / 1e6, tz=dt.UTC)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


def _show_ts(value: dt.datetime | None) -> str:
    return "-" if value is None else format_instant(from_datetime(value))


def _call(
    ctx: click.Context,
    fn: Callable[[spb.SimulatorServiceStub], Awaitable[T]],
    timeout: float | None = 30,
) -> T:
    """Run one call against the target; server errors exit 1 with the message on stderr.

    ``timeout=None`` is for a stream that runs until interrupted (the stub's own default would
    otherwise apply to every call, since betterproto2 reads ``None`` as "use the stub's")."""
    target: str = ctx.obj["target"]
    token: str = ctx.obj["admin_token"]
    metadata = {"authorization": f"Bearer {token}"}
    if ctx.obj.get("session", "default") != "default":
        metadata["x-gitpod-sim-session"] = ctx.obj["session"]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {target!r}", param_hint="--target")

    async def run() -> T:
        channel = Channel(host.strip("[]"), int(port))
        try:
            stub = spb.SimulatorServiceStub(channel, metadata=metadata, timeout=timeout)
            return await fn(stub)
        finally:
            channel.close()

    try:
        return asyncio.run(run())
    except GRPCError as exc:
        click.echo(f"error: {exc.status.name}: {exc.message}", err=True)
        sys.exit(1)
    except (OSError, TimeoutError) as exc:
        click.echo(f"error: cannot reach {target}: {exc}", err=True)
        sys.exit(1)


def _print_clock(clock: spb.Clock | None) -> None:
    assert clock is not None
    mode = spb.ClockMode(clock.mode).name.lower()
    grace = clock.autojump_grace.total_seconds() if clock.autojump_grace else 0.0
    click.echo(f"now      {_show_ts(clock.now)}")
    click.echo(f"mode     {mode} (speed {clock.speed:g}, autojump grace {grace * 1000:g}ms)")
    nxt = f"{_show_ts(clock.next_event_at)} {clock.next_event_kind}" if clock.next_event_at else "-"
    click.echo(f"next     {nxt}")
    click.echo(f"pending  {clock.pending_events}")


def _print_transitions(transitions: list[spb.Transition]) -> None:
    for t in transitions:
        click.echo(
            f"{_show_ts(t.at)} {t.instance_id} {Phase(t.from_phase).name} -> "
            f"{Phase(t.to_phase).name} ({t.cause})"
        )


@click.group()
@click.option("--target", required=True, help="HOST:PORT of a running gitpod-sim.")
@click.option("--admin-token", required=True, help="The server's admin token.")
@click.option(
    "--session",
    default="default",
    show_default=True,
    help="The session every command steers (x-gitpod-sim-session).",
)
@click.pass_context
def ctl(ctx: click.Context, target: str, admin_token: str, session: str) -> None:
    """Steer a running simulator: clock, plans, faults, journal and state."""
    ctx.obj = {"target": target, "admin_token": admin_token, "session": session}


# ---------------------------------------------------------------------------- clock


@ctl.command()
@click.pass_context
def clock(ctx: click.Context) -> None:
    """Print the clock and what is scheduled next."""
    response = _call(ctx, lambda s: s.get_clock(spb.GetClockRequest()))
    _print_clock(response.clock)


@ctl.command()
@click.argument("mode", type=click.Choice(list(_MODES)))
@click.option("--speed", type=float, default=None, help="Realtime speed factor.")
@click.option("--grace", default=None, help="Autojump grace period, e.g. 20ms.")
@click.pass_context
def mode(ctx: click.Context, mode: str, speed: float | None, grace: str | None) -> None:
    """Switch the clock to MODE."""
    request = spb.SetClockRequest(
        mode=_MODES[mode],
        speed=speed,
        autojump_grace=None if grace is None else _td(grace, "--grace"),
    )
    _print_clock(_call(ctx, lambda s: s.set_clock(request)).clock)


@ctl.command()
@click.argument("duration", required=False)
@click.option("--next", "to_next", is_flag=True, help="Jump to the next scheduled event.")
@click.option("--idle", is_flag=True, help="Run until nothing is scheduled.")
@click.option("--limit", default="7d", show_default=True, help="With --idle: at most this much.")
@click.pass_context
def advance(
    ctx: click.Context, duration: str | None, to_next: bool, idle: bool, limit: str
) -> None:
    """Move simulated time: by DURATION (90s, 5m, 1h30m), --next or --idle."""
    chosen = sum([duration is not None, to_next, idle])
    if chosen != 1:
        raise click.UsageError("give exactly one of DURATION, --next, --idle")
    if duration is not None:
        request = spb.AdvanceRequest(by=_td(duration, "DURATION"))
    elif to_next:
        request = spb.AdvanceRequest(to_next_event=True)
    else:
        request = spb.AdvanceRequest(until_idle=_td(limit, "--limit"))
    response = _call(ctx, lambda s: s.advance(request))
    _print_transitions(response.transitions)
    assert response.clock is not None
    click.echo(f"now {_show_ts(response.clock.now)}{' (idle)' if response.idle else ''}")


# ---------------------------------------------------------------------------- lifecycle


def _distribution(text: str, what: str) -> spb.Distribution:
    low, sep, high = text.partition("..")
    if sep:
        return spb.Distribution(
            uniform=spb.UniformDistribution(low=_td(low, what), high=_td(high, what))
        )
    return spb.Distribution(fixed=_td(text, what))


@ctl.group()
def plan() -> None:
    """Lifecycle plans: durations, image builds, timeouts, cluster."""


@plan.command("set")
@click.option("--user", "user_id", default=None, help="Only this user's starts.")
@click.option("--context", "pattern", default=None, help="Only contexts matching this regex.")
@click.option(
    "--duration",
    "durations",
    multiple=True,
    metavar="PHASE=D",
    help="A phase's duration: fixed (10s) or uniform (5s..15s). Repeatable.",
)
@click.option("--build", type=click.Choice(list(_BUILD)), default=None, help="Build policy.")
@click.option(
    "--timeout",
    "timeouts",
    multiple=True,
    metavar="NAME=D",
    help="initialization, startup, inactivity, max_lifetime, interruption, stopping (0 disables).",
)
@click.option("--cluster", default="", help="Cluster name in instance URLs.")
@click.pass_context
def plan_set(
    ctx: click.Context,
    user_id: str | None,
    pattern: str | None,
    durations: tuple[str, ...],
    build: str | None,
    timeouts: tuple[str, ...],
    cluster: str,
) -> None:
    """Set the plan of a scope (global unless --user or --context)."""
    if user_id is not None and pattern is not None:
        raise click.UsageError("give at most one of --user, --context")
    scope = (
        spb.PlanScope(user_id=user_id)
        if user_id is not None
        else spb.PlanScope(context_pattern=pattern)
        if pattern is not None
        else spb.PlanScope(global_=True)
    )
    phases = []
    for item in durations:
        name, sep, value = item.partition("=")
        if not sep or name.upper() not in Phase.__members__:
            raise click.BadParameter(
                f"expected PHASE=DURATION, got {item!r}", param_hint="--duration"
            )
        phases.append(
            spb.PhaseDuration(
                phase=phase_pb(Phase[name.upper()]), duration=_distribution(value, "--duration")
            )
        )
    limits: dict[str, dt.timedelta] = {}
    for item in timeouts:
        name, sep, value = item.partition("=")
        if not sep or name not in spb.Timeouts.__dataclass_fields__:
            raise click.BadParameter(
                f"expected NAME=DURATION, got {item!r}", param_hint="--timeout"
            )
        limits[name] = _td(value, "--timeout")
    request = spb.SetPlanRequest(
        scope=scope,
        plan=spb.LifecyclePlan(
            durations=phases,
            build_policy=_BUILD[build] if build else spb.BuildPolicy.UNSPECIFIED,
            timeouts=spb.Timeouts(**limits) if limits else None,
            cluster=cluster,
        ),
    )
    response = _call(ctx, lambda s: s.set_plan(request))
    assert response.plan is not None
    click.echo(response.plan.id)


@plan.command("list")
@click.pass_context
def plan_list(ctx: click.Context) -> None:
    """List the plans."""
    response = _call(ctx, lambda s: s.list_plans(spb.ListPlansRequest()))
    for scoped in response.plans:
        click.echo(f"{scoped.id} {json.dumps(scoped.to_dict())}")


@plan.command("delete")
@click.argument("plan_id")
@click.pass_context
def plan_delete(ctx: click.Context, plan_id: str) -> None:
    """Delete a plan."""
    _call(ctx, lambda s: s.delete_plan(spb.DeletePlanRequest(id=plan_id)))


@ctl.command("mark-active")
@click.argument("workspace_id")
@click.pass_context
def mark_active(ctx: click.Context, workspace_id: str) -> None:
    """Record user activity in a workspace."""
    _call(ctx, lambda s: s.mark_active(spb.MarkActiveRequest(workspace_id=workspace_id)))


@ctl.command()
@click.argument("workspace_id")
@click.option("--off", is_flag=True, help="Unshare instead.")
@click.pass_context
def share(ctx: click.Context, workspace_id: str, off: bool) -> None:
    """Share a workspace (admission EVERYONE), or unshare it with --off."""
    level = pb.AdmissionLevel.OWNER_ONLY if off else pb.AdmissionLevel.EVERYONE
    request = spb.SetAdmissionRequest(workspace_id=workspace_id, admission=level)
    _call(ctx, lambda s: s.set_admission(request))


@ctl.command()
@click.argument("prebuild_id")
@click.argument("context_url")
@click.option("--commit", default="", help="40 hex characters.")
@click.pass_context
def prebuild(ctx: click.Context, prebuild_id: str, context_url: str, commit: str) -> None:
    """Register a finished prebuild."""
    request = spb.AddPrebuildRequest(
        prebuild_id=prebuild_id, context_url=context_url, commit=commit
    )
    response = _call(ctx, lambda s: s.add_prebuild(request))
    click.echo(f"{response.prebuild_id} {response.commit}")


# ---------------------------------------------------------------------------- faults


def _fault_params() -> dict[str, tuple[Param, list[str]]]:
    """Every parameter of the registry once, with the kinds that take it (for --help)."""
    params: dict[str, tuple[Param, list[str]]] = {}
    for kind in FAULT_KINDS:
        for p in kind.params:
            params.setdefault(p.name, (p, []))[1].append(kind.name)
    return params


_FAULT_PARAMS = _fault_params()


def _param_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per fault parameter, generated from the registry."""
    for name, (p, kinds) in reversed(_FAULT_PARAMS.items()):
        text = f"{'/'.join(kinds)}: {p.help}."
        if p.type is ParamType.FLAG:
            decls = [f"{p.option}/--{p.off_flag or 'no-' + p.option[2:]}", name]
            fn = click.option(*decls, default=None, help=text)(fn)
        elif p.type is ParamType.LINES:
            fn = click.option(p.option, name, multiple=True, help=text + " Repeatable.")(fn)
        else:
            kind: Any = {
                ParamType.PROBABILITY: float,
                ParamType.COUNT: click.IntRange(0),
            }.get(p.type, str)
            fn = click.option(p.option, name, default=None, type=kind, help=text)(fn)
    return fn


def _param_value(p: Param, value: Any) -> Any:
    """A CLI value typed as the registry types it (durations, phases, status codes)."""
    try:
        if p.type in (ParamType.DURATION, ParamType.OPTIONAL_DURATION):
            return parse_duration(value)
        if p.type is ParamType.PHASE:
            name = str(value).upper()
            if name not in Phase.__members__:
                raise ValueError(f"unknown phase {value!r}")
            return Phase[name]
        if p.type is ParamType.CODE:
            return status_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=p.option) from None
    except InvalidArgument as exc:
        raise click.BadParameter(exc.message, param_hint=p.option) from None
    return tuple(value) if p.type is ParamType.LINES else value


def _instant(text: str | None, what: str, now: SimTime) -> dt.datetime | None:
    """An absolute ISO 8601 instant, or ``+DURATION`` from the simulator's present."""
    if text is None:
        return None
    if not text.startswith("+"):
        return _ts(text, what)
    return dt.datetime.fromtimestamp((now + _micros(text[1:], what)) / 1e6, tz=dt.UTC)


def _micros(text: str, what: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


_FAULT_HELP = f"""Add a fault of KIND; prints its id.

\b
Kinds (one name everywhere: scenarios, state files; FaultSpec fields with underscores):
{chr(10).join(f"  {k.name:18} {k.help}" for k in FAULT_KINDS)}

Defaults: a lifecycle fault aims at the next start, an rpc or stream fault at every call or
stream; it applies once (--count 1; 0: unlimited), from now on, to the first matching occasion
(--skip 0). --code takes a status name (UNAVAILABLE) or number (14), default UNAVAILABLE;
--from/--until take an ISO 8601 instant or +DURATION from the simulator's now (+5m).
"""


@ctl.command(help=_FAULT_HELP)
@click.argument("kind", type=click.Choice(FAULT_NAMES))
@click.option("--next-start", is_flag=True, help="Aim at the next instance(s) that start.")
@click.option("--workspace", default=None, help="Aim at a workspace.")
@click.option("--instance", default=None, help="Aim at an instance.")
@click.option("--context", "pattern", default=None, help="Aim at contexts matching a regex.")
@click.option("--user", "user_id", default=None, help="Aim at one user's calls, streams, starts.")
@click.option(
    "--count", default=1, show_default=True, type=click.IntRange(0), help="Times (0: unlimited)."
)
@click.option(
    "--skip", default=0, show_default=True, type=click.IntRange(0), help="Let N matches pass first."
)
@click.option("--from", "active_from", default=None, help="Active from (ISO 8601 or +5m).")
@click.option("--until", "active_until", default=None, help="Active until (ISO 8601 or +1h).")
@_param_options
@click.pass_context
def fault(ctx: click.Context, /, kind: str, **o: Any) -> None:
    targets = [
        spb.FaultTarget(next_start=True) if o["next_start"] else None,
        spb.FaultTarget(workspace_id=o["workspace"]) if o["workspace"] else None,
        spb.FaultTarget(instance_id=o["instance"]) if o["instance"] else None,
        spb.FaultTarget(context_pattern=o["pattern"]) if o["pattern"] is not None else None,
        spb.FaultTarget(user_id=o["user_id"]) if o["user_id"] else None,
    ]
    chosen = [t for t in targets if t is not None]
    if len(chosen) > 1:
        raise click.UsageError("give at most one target")
    fault_kind = KINDS[kind]
    given = {name for name in _FAULT_PARAMS if o[name] not in (None, ())}
    stray = sorted(given - {p.name for p in fault_kind.params})
    if stray:
        options = ", ".join(_FAULT_PARAMS[name][0].option for name in stray)
        raise click.UsageError(f"{options} does not apply to {kind}")
    values: dict[str, object] = {}
    for p in fault_kind.params:
        if p.name in given:
            values[p.name] = _param_value(p, o[p.name])
        elif p.required:
            raise click.UsageError(f"{kind} needs {p.option}")
        elif p.default is not None:
            values[p.name] = p.default
    for key in ("active_from", "active_until"):  # check before any call
        text = o[key]
        if text is not None and text.startswith("+"):
            _micros(text[1:], "--" + key[7:])
        elif text is not None:
            _ts(text, "--" + key[7:])
    relative = any((o[k] or "").startswith("+") for k in ("active_from", "active_until"))

    async def add(s: spb.SimulatorServiceStub) -> spb.AddFaultResponse:
        now = 0
        if relative:
            clock = (await s.get_clock(spb.GetClockRequest())).clock
            assert clock is not None and clock.now is not None
            now = from_datetime(clock.now)
        spec = spb.FaultSpec(
            target=chosen[0] if chosen else None,
            count=o["count"],
            skip=o["skip"],
            active_from=_instant(o["active_from"], "--from", now),
            active_until=_instant(o["active_until"], "--until", now),
        )
        setattr(spec, fault_kind.proto_field, effect_message(fault_kind, values))
        return await s.add_fault(spb.AddFaultRequest(spec=spec))

    response = _call(ctx, add)
    assert response.fault is not None
    click.echo(response.fault.id)


@ctl.group(invoke_without_command=True)
@click.pass_context
def faults(ctx: click.Context) -> None:
    """List faults (or `faults clear [ID...]`)."""
    if ctx.invoked_subcommand is None:
        response = _call(ctx, lambda s: s.list_faults(spb.ListFaultsRequest()))
        for f in response.faults:
            state = "exhausted" if f.exhausted else "active"
            assert f.spec is not None
            click.echo(f"{f.id} {state} applied={f.times_applied} {json.dumps(f.spec.to_dict())}")


@faults.command("clear")
@click.argument("ids", nargs=-1)
@click.pass_context
def faults_clear(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Clear the given faults, or all of them."""
    response = _call(ctx, lambda s: s.clear_faults(spb.ClearFaultsRequest(ids=list(ids))))
    click.echo(f"cleared {response.cleared}")


# ---------------------------------------------------------------------------- journal


def _entry_json(entry: spb.JournalEntry) -> str:
    return json.dumps(entry.to_dict(), ensure_ascii=False)


@ctl.command()
@click.option(
    "--from", "from_seq", default=0, type=click.IntRange(0), help="First sequence number."
)
@click.option("--limit", default=1000, type=click.IntRange(1), help="At most this many.")
@click.option("--follow", is_flag=True, help="Keep printing new entries (Ctrl-C ends).")
@click.pass_context
def journal(ctx: click.Context, from_seq: int, limit: int, follow: bool) -> None:
    """Print journal entries as JSON Lines."""
    if not follow:
        request = spb.ReadJournalRequest(from_seq=from_seq, limit=limit)
        for entry in _call(ctx, lambda s: s.read_journal(request)).entries:
            click.echo(_entry_json(entry))
        return

    async def follow_all(stub: spb.SimulatorServiceStub) -> None:
        request = spb.FollowJournalRequest(from_seq=from_seq)

        async def consume() -> None:
            async for entry in stub.follow_journal(request):
                click.echo(_entry_json(entry))

        # Ctrl-C ends the follow through an event of our own, not by cancelling asyncio.run's
        # task: a stream that swallowed that cancel kept the command running (seen under load)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGINT, stop.set)
        following = asyncio.ensure_future(consume())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if following.done():
            following.result()  # the server ended it: its status, if any, is an error
            return
        following.cancel()
        ended, _ = await asyncio.wait({following}, timeout=2)
        if not ended:
            sys.stdout.flush()
            os._exit(0)  # the stream ignores its cancel: Ctrl-C must still end the command

    with contextlib.suppress(KeyboardInterrupt):
        _call(ctx, follow_all, timeout=None)


# ---------------------------------------------------------------------------- waiting


@ctl.command()
@click.option("--instance", "instance_id", default="", help="The instance waited on.")
@click.option("--workspace", "workspace_id", default="", help="Or: a workspace's instance.")
@click.option(
    "--listeners", default=0, type=click.IntRange(0), help="At least this many listen streams."
)
@click.option(
    "--phase",
    default=None,
    type=click.Choice([p.name for p in Phase if p is not Phase.UNSPECIFIED], case_sensitive=False),
    help="The phase it is in (or passed through while waiting).",
)
@click.option("--timeout", "wait", default="10s", help="Real time to wait at most (e.g. 30s).")
@click.pass_context
def wait(
    ctx: click.Context,
    instance_id: str,
    workspace_id: str,
    listeners: int,
    phase: str | None,
    wait: str,
) -> None:
    """Wait (real time, never moving the clock) until an instance has N listeners and/or is in
    a phase; exits 1 with DEADLINE_EXCEEDED when the timeout passes first."""
    if not instance_id and not workspace_id:
        raise click.UsageError("give --instance or --workspace")
    limit = _td(wait, "--timeout")
    request = spb.WaitForRequest(
        instance_id=instance_id,
        workspace_id=workspace_id,
        listeners=listeners,
        phase=phase_pb(Phase[phase.upper()]) if phase else pb.WorkspaceInstanceStatusPhase(0),
        timeout=limit,
    )
    seconds = limit.total_seconds() or 10.0
    answer = _call(ctx, lambda s: s.wait_for(request), timeout=seconds + 5)
    click.echo(
        f"{answer.instance_id} listeners={answer.listeners} phase={Phase(answer.phase.value).name}"
    )


# ---------------------------------------------------------------------------- state


@ctl.command()
@click.option("--seed", default=None, type=int, help="A new seed (default: keep).")
@click.option("--drop-users", is_flag=True, help="Also remove every user.")
@click.option(
    "--clear-journal", is_flag=True, help="Also empty the journal (sequence numbers go on)."
)
@click.pass_context
def reset(ctx: click.Context, seed: int | None, drop_users: bool, clear_journal: bool) -> None:
    """Empty the simulator without a restart (the journal is kept unless --clear-journal)."""
    request = spb.ResetRequest(seed=seed, drop_users=drop_users, clear_journal=clear_journal)
    click.echo(f"seed {_call(ctx, lambda s: s.reset(request)).seed}")


@ctl.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.pass_context
def export_(ctx: click.Context, file: str) -> None:
    """Write the whole state to FILE (JSON)."""
    response = _call(ctx, lambda s: s.export_state(spb.ExportStateRequest()))
    Path(file).write_text(response.state_json, encoding="utf-8")


@ctl.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def import_(ctx: click.Context, file: str) -> None:
    """Replace the whole state with FILE's."""
    text = Path(file).read_text(encoding="utf-8")
    response = _call(ctx, lambda s: s.import_state(spb.ImportStateRequest(state_json=text)))
    click.echo(
        f"users {response.users} workspaces {response.workspaces} instances {response.instances}"
    )


@ctl.group()
def user() -> None:
    """Users of the Gitpod API."""


@user.command("add")
@click.argument("spec", metavar="NAME[=TOKEN]")
@click.pass_context
def user_add(ctx: click.Context, spec: str) -> None:
    """Add a user; without a token one is generated. Prints NAME TOKEN."""
    name, _, token = spec.partition("=")
    request = spb.AddUserRequest(user_id=name, token=token)
    response = _call(ctx, lambda s: s.add_user(request))
    click.echo(f"{response.user_id} {response.token}")


# ---------------------------------------------------------------------------- coverage


@ctl.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
@click.option(
    "--html",
    "html_file",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the report as one self-contained HTML page to FILE.",
)
@click.pass_context
def coverage(ctx: click.Context, as_json: bool, html_file: str | None) -> None:
    """Which behaviours the simulator has shown: covered / total per group, then every item
    never exercised (``coverage reset`` counts from zero again)."""
    if ctx.invoked_subcommand is not None:
        return
    from simulator.core.coverage import CoverageReport
    from simulator.coverage_report import print_report, to_html

    reply = _call(ctx, lambda s: s.get_coverage(spb.GetCoverageRequest()))
    report = CoverageReport.from_json(json.loads(reply.coverage_json))
    if html_file is not None:
        Path(html_file).write_text(to_html(report), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1))
    else:
        print_report(report)
        if html_file is not None:
            click.echo(f"written {html_file}")


@coverage.command("reset")
@click.pass_context
def coverage_reset(ctx: click.Context) -> None:
    """Count coverage from zero again."""
    _call(ctx, lambda s: s.reset_coverage(spb.ResetCoverageRequest()))
    click.echo("coverage reset")


# ---------------------------------------------------------------------------- sessions


@ctl.group()
def session() -> None:
    """Sessions: isolated worlds, each with its own clock, on the one server."""


@session.command("create")
@click.argument("name")
@click.option("--seed", type=int, default=None, help="Default: a random one (printed).")
@click.option("--clock", "clock_mode", type=click.Choice(list(_MODES)), default="manual",
              show_default=True, help="How the session's time moves.")  # fmt: skip
@click.option("--speed", type=float, default=None, help="Realtime speed factor.")
@click.option("--grace", default=None, help="Autojump grace period, e.g. 20ms.")
@click.option("--start-time", default=None, help="Simulated time at start (ISO 8601).")
@click.option("--user", "users", multiple=True, metavar="NAME[=TOKEN]",
              help="A caller (repeatable); no token: one drawn from the seed.")  # fmt: skip
@click.pass_context
def session_create(
    ctx: click.Context,
    name: str,
    seed: int | None,
    clock_mode: str,
    speed: float | None,
    grace: str | None,
    start_time: str | None,
    users: tuple[str, ...],
) -> None:
    """Create session NAME. Prints its seed, then NAME TOKEN per user."""
    people = []
    for spec in users:
        user_id, _, token = spec.partition("=")
        people.append(spb.SessionUser(user_id=user_id, token=token))
    request = spb.CreateSessionRequest(
        name=name,
        seed=seed,
        clock_mode=_MODES[clock_mode],
        speed=speed,
        autojump_grace=None if grace is None else _td(grace, "--grace"),
        start_time=_ts(start_time, "--start-time"),
        users=people,
    )
    response = _call(ctx, lambda s: s.create_session(request))
    assert response.session is not None
    click.echo(f"session {response.session.name} seed {response.session.seed}")
    for person in response.users:
        click.echo(f"{person.user_id} {person.token}")


@session.command("delete")
@click.argument("name")
@click.pass_context
def session_delete(ctx: click.Context, name: str) -> None:
    """Delete session NAME (its open streams end with ABORTED)."""
    _call(ctx, lambda s: s.delete_session(spb.DeleteSessionRequest(name=name)))
    click.echo(f"session {name} deleted")


@session.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per session.")
@click.pass_context
def session_list(ctx: click.Context, as_json: bool) -> None:
    """Every session: name, clock, users, workspaces, open streams, last activity."""
    response = _call(ctx, lambda s: s.list_sessions(spb.ListSessionsRequest()))
    if not as_json:
        click.echo("NAME  SEED  CLOCK  NOW  USERS  WORKSPACES  STREAMS  LAST-ACTIVITY")
    for item in response.sessions:
        clock = item.clock
        assert clock is not None
        mode = spb.ClockMode(clock.mode).name.lower()
        last = "-" if item.last_activity is None else item.last_activity.isoformat()
        if as_json:
            row = {
                "name": item.name, "seed": item.seed, "clock": mode, "now": _show_ts(clock.now),
                "users": item.users, "workspaces": item.workspaces,
                "open_streams": item.open_streams, "last_activity": last,
            }  # fmt: skip
            click.echo(json.dumps(row))
        else:
            click.echo(
                f"{item.name}  {item.seed}  {mode}  {_show_ts(clock.now)}  {item.users}"
                f"  {item.workspaces}  {item.open_streams}  {last}"
            )
