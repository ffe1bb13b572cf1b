"""The ``gitpod-sim`` command line (click: subcommands, typed options and usage errors with exit
code 2 come for free, which hand-written argparse subparsers would need glue for)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import click

from simulator._version import __version__
from simulator.core import limits
from simulator.core.quotas import (
    DEFAULT_IDEMPOTENCY_RECORDS,
    DEFAULT_PAGE_TOKENS,
    DEFAULT_WORKSPACES,
    Quotas,
)
from simulator.core.simtime import (
    DEFAULT_START,
    SECOND,
    format_instant,
    parse_duration,
    parse_instant,
)
from simulator.server.clock import ClockMode

if TYPE_CHECKING:
    from simulator.server.host import SimServer
    from simulator.server.runtime import Simulator


class _DurationParam(click.ParamType[int]):
    """A duration, in the range every entry point accepts (:mod:`simulator.core.limits`)."""

    name = "duration"

    def __init__(self, check: Callable[[int], object] | None = None) -> None:
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            d = value if isinstance(value, int) else parse_duration(str(value))
            limits.duration(_flag(param), d)
            if self._check is not None:
                self._check(d)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return d


class _InstantParam(click.ParamType[int]):
    name = "iso8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            t = value if isinstance(value, int) else parse_instant(str(value))
            return limits.instant(_flag(param), t)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _flag(param: click.Parameter | None) -> str:
    return param.opts[0] if param is not None and param.opts else "value"


class _SizeParam(click.ParamType[int]):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from simulator.server.limits import parse_size

        try:
            size = parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size < 1:
            self.fail(f"must be at least 1 byte, got {value!r}", param, ctx)
        return size


class _UserParam(click.ParamType[tuple[str, str]]):
    name = "NAME=TOKEN"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        name, sep, token = str(value).partition("=")
        if not sep or not name.strip() or not token.strip():
            self.fail(f"expected NAME=TOKEN, got {value!r}", param, ctx)
        if any(c.isspace() for c in name + token):
            self.fail(f"NAME and TOKEN must not contain whitespace: {value!r}", param, ctx)
        try:
            limits.name("NAME", name)
            limits.token("TOKEN", token)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return name, token


class _SpeedParam(click.ParamType[float]):
    name = "factor"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            speed = float(value)
        except (TypeError, ValueError):
            self.fail(f"speed must be a number, got {value!r}", param, ctx)
        try:
            return limits.speed(speed, "--speed")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _LazyGroup(click.Group):
    """Subcommand groups that live in their own modules load only when used, so ``serve`` starts
    without importing the control client or the scenario runner (start-up time is measured)."""

    lazy: ClassVar[dict[str, str]] = {
        "ctl": "simulator.ctl:ctl",
        "scenario": "simulator.scenario.cli:scenario",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            import importlib

            module, _, attr = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gitpod-sim", message="%(prog)s %(version)s")
def main() -> None:
    """gitpod-sim: a deterministic, in-memory simulator of Gitpod's workspaces API."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=50051,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port; 0 picks a free one.",
)
@click.option(
    "--seed",
    default=None,
    type=click.IntRange(limits.MIN_SEED, limits.MAX_SEED),
    help="Decides every id, token and draw; default: drawn at random and printed (pass it back"
    " to replay a run).",
)
@click.option(
    "--clock",
    "clock_mode",
    default="realtime",
    show_default=True,
    type=click.Choice([m.value for m in ClockMode]),
    help="How simulated time moves.",
)
@click.option(
    "--speed", default=1.0, show_default=True, type=_SpeedParam(), help="Realtime speed factor."
)
@click.option(
    "--autojump-grace",
    default="250ms",
    show_default=True,
    type=_DurationParam(lambda d: limits.autojump_grace(d / SECOND, "--autojump-grace")),
    help="Real quiet time before autojump jumps to a timeout (at most 1h).",
)
@click.option(
    "--start-time",
    default=format_instant(DEFAULT_START),
    show_default=True,
    type=_InstantParam(),
    help="Simulated time at start (ISO 8601).",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    type=_UserParam(),
    help="A caller: NAME=TOKEN (repeatable). NAME is the user id.",
)
@click.option(
    "--http-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Also serve Connect and gRPC-Web over HTTP/1.1 on this port (0: a free one).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Origin allowed to call the HTTP port from a browser (repeatable; * for any).",
)
@click.option(
    "--admin-token",
    default=None,
    help="Token for the control service (gitpod.simulator.v1); default: generated and printed.",
)
@click.option(
    "--state",
    "state_file",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Load the state from FILE at start (if it exists) and write it there at clean shutdown"
    " (atomically; FILE is locked while the server runs).",
)
@click.option(
    "--state-interval",
    default=None,
    type=_DurationParam(lambda d: _positive(d, "--state-interval")),
    help="Also write --state every D (e.g. 30s), so a crash loses at most that much.",
)
@click.option(
    "--coverage",
    "coverage_file",
    default=None,
    type=click.Path(dir_okay=False, writable=True),
    help="Write the coverage report (JSON, see the README) to FILE at clean shutdown.",
)
@click.option(
    "--journal-size",
    default=100_000,
    show_default=True,
    type=click.IntRange(1, limits.MAX_JOURNAL_SIZE),
    help="Journal entries kept (the oldest go first).",
)
@click.option(
    "--journal-bytes",
    default="32MiB",
    show_default=True,
    type=_SizeParam(),
    help="What the journal may hold besides its entry count (the oldest go first).",
)
@click.option(
    "--max-request-size",
    default="4MiB",
    show_default=True,
    type=_SizeParam(),
    help="Largest request message, decompressed (both ports); larger: RESOURCE_EXHAUSTED.",
)
@click.option(
    "--max-connections",
    default=512,
    show_default=True,
    type=click.IntRange(1),
    help="Client connections open at once, both ports (at the cap the longest idle closes).",
)
@click.option(
    "--idle-timeout",
    default="5m",
    show_default=True,
    type=_DurationParam(),
    help="Real time a connection with no stream in progress stays open (0: forever).",
)
@click.option(
    "--stall-timeout",
    default="5s",
    show_default=True,
    type=_DurationParam(),
    help="Real time a stream may take none of its messages before RESOURCE_EXHAUSTED (0: never).",
)
@click.option(
    "--max-concurrent-streams",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="HTTP/2 streams open at once on one connection.",
)
@click.option(
    "--rapid-reset-streams",
    default=200,
    show_default=True,
    type=click.IntRange(0),
    help="Close a connection after this many streams reset within 1 s of opening (0: never).",
)
@click.option(
    "--max-workspaces-per-user",
    default=DEFAULT_WORKSPACES,
    show_default=True,
    type=click.IntRange(1),
    help="Workspaces one user may have in a session; more: RESOURCE_EXHAUSTED.",
)
@click.option(
    "--max-page-tokens-per-user",
    default=DEFAULT_PAGE_TOKENS,
    show_default=True,
    type=click.IntRange(1),
    help="ListWorkspaces page tokens kept per user; past it the user's least recently used goes.",
)
@click.option(
    "--max-idempotency-records-per-user",
    default=DEFAULT_IDEMPOTENCY_RECORDS,
    show_default=True,
    type=click.IntRange(1),
    help="Idempotency records one user may hold in a session; more: RESOURCE_EXHAUSTED.",
)
@click.option(
    "--max-sessions",
    default=1000,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="Sessions held besides 'default' (x-gitpod-sim-session); more: RESOURCE_EXHAUSTED.",
)
@click.option(
    "--session-idle-ttl",
    default=None,
    type=_DurationParam(lambda d: _positive(d, "--session-idle-ttl")),
    help="Delete a session after D of real time with no call and no open stream (default: never).",
)
@click.option("--quiet", is_flag=True, help="Do not log every RPC and phase change.")
@click.option(
    "--scenario",
    "scenario_file",
    default=None,
    metavar="NAME|FILE",
    help="Load a scenario's setup (users, plans, prebuilds, workspaces) as seed data.",
)
def serve(
    host: str,
    port: int,
    seed: int | None,
    clock_mode: str,
    speed: float,
    autojump_grace: int,
    start_time: int,
    users: tuple[tuple[str, str], ...],
    http_port: int | None,
    cors_origins: tuple[str, ...],
    admin_token: str | None,
    state_file: str | None,
    state_interval: int | None,
    journal_size: int,
    quiet: bool,
    scenario_file: str | None = None,
    coverage_file: str | None = None,
    max_request_size: int = 4 * 1024 * 1024,
    journal_bytes: int = 32 * 1024 * 1024,
    stall_timeout: int = 5 * SECOND,
    max_connections: int = 512,
    idle_timeout: int = 300 * SECOND,
    max_concurrent_streams: int = 100,
    rapid_reset_streams: int = 200,
    max_sessions: int = 1000,
    session_idle_ttl: int | None = None,
    max_workspaces_per_user: int = DEFAULT_WORKSPACES,
    max_page_tokens_per_user: int = DEFAULT_PAGE_TOKENS,
    max_idempotency_records_per_user: int = DEFAULT_IDEMPOTENCY_RECORDS,
) -> None:
    """Serve gitpod.v1.WorkspacesService over gRPC until SIGINT or SIGTERM."""
    import gc

    gc.set_threshold(*_GC_THRESHOLDS)  # from here: loading the stack allocates much, frees little
    # the server stack loads only when it serves
    from simulator.server.limits import Limits as ServerLimits
    from simulator.server.runtime import Simulator, new_secret_token, new_seed

    click.echo(f"gitpod-sim {__version__}")
    names = [name for name, _ in users]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise click.BadParameter(f"user given twice: {', '.join(duplicates)}", param_hint="--user")
    tokens = [token for _, token in users]
    if len(set(tokens)) != len(tokens):
        raise click.BadParameter("two users share one token", param_hint="--user")
    if admin_token is not None:
        try:
            limits.token("--admin-token", admin_token)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--admin-token") from None
    seed_given = seed is not None
    sim = Simulator(
        seed=seed if seed is not None else new_seed(),
        clock=clock_mode,
        speed=speed,
        autojump_grace=autojump_grace / SECOND,
        start_time=start_time,
        users=dict(users),
        admin_token=admin_token,
        journal_size=journal_size,
        server_limits=ServerLimits(
            max_request_bytes=max_request_size,
            max_connections=max_connections,
            idle_timeout=idle_timeout / SECOND,
            max_concurrent_streams=max_concurrent_streams,
            rapid_reset_streams=rapid_reset_streams,
            journal_bytes=journal_bytes,
            stall_timeout=stall_timeout / SECOND,
            quotas=Quotas(
                workspaces=max_workspaces_per_user,
                page_tokens=max_page_tokens_per_user,
                idempotency_records=max_idempotency_records_per_user,
            ),
        ),
    )
    if admin_token is not None and (not admin_token.strip() or admin_token in tokens):
        raise click.BadParameter(
            "must be non-empty and differ from every API token", param_hint="--admin-token"
        )
    if state_interval is not None and state_file is None:
        raise click.BadParameter("needs --state FILE", param_hint="--state-interval")
    state_lock = None
    if state_file is not None:
        from simulator.server.state_file import StateFileError, StateLock, check_directory

        try:  # before anything runs: a state that cannot be written would be lost at shutdown
            check_directory(state_file)
            state_lock = StateLock(state_file)
            state_lock.acquire()  # held until the process exits
        except (OSError, StateFileError) as exc:
            click.echo(f"error: --state: {exc}", err=True)
            sys.exit(2)
    if state_file is not None and os.path.exists(state_file):
        from simulator.core.errors import SimError

        try:
            sim.load_state(state_file)
        except (OSError, SimError) as exc:
            message = exc.message if isinstance(exc, SimError) else str(exc)
            click.echo(f"error: cannot load state from {state_file}: {message}", err=True)
            sys.exit(2)
        click.echo(f"state loaded from {state_file}")
        for name, token in users:
            if name not in sim.engine.users:
                sim.add_user(name, token)
    if scenario_file is not None:
        from simulator.scenario.cli import seed_from_scenario

        seed_from_scenario(sim, scenario_file)
    if not seed_given:
        click.echo(f"seed {sim.seed}")
    if not sim.engine.users:
        # a credential, so from the OS's randomness, never from the seed
        user = sim.add_user("developer", new_secret_token("gitpod_sim_user_"))
        click.echo(f"user developer token {user.token}")
    if admin_token is None:
        click.echo(f"admin token {sim.admin_token}")
    _configure_logging(quiet)
    _tune_gc()
    from simulator.server.host import SimServer

    hosting = SimServer(
        sim,
        max_sessions=max_sessions,
        session_idle_ttl=None if session_idle_ttl is None else session_idle_ttl / SECOND,
    )
    saver = None if state_file is None else _StateSaver(sim, state_file)
    try:
        asyncio.run(
            _serve(
                hosting, host, port, http_port, cors_origins, saver, (state_interval or 0) / SECOND
            )
        )
    except ListenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        if saver is not None and not saver.save():
            sys.exit(1)
        if state_lock is not None:
            state_lock.release()
    if state_file is not None:
        click.echo(f"state written to {state_file}")
    if coverage_file is not None:
        from simulator.coverage_report import summary_line, write_json

        report = sim.coverage()
        write_json(report, coverage_file)
        click.echo(f"coverage written to {coverage_file}: {summary_line(report)}")


async def _serve(
    sim: Simulator | SimServer,
    host: str,
    port: int,
    http_port: int | None = None,
    cors_origins: tuple[str, ...] = (),
    saver: _StateSaver | None = None,
    save_every: float = 0,
) -> None:
    from simulator.server.runtime import bound_port

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shown = f"[{host}]" if ":" in host else host
    async with contextlib.AsyncExitStack() as stack:
        # Bind every port first and only then say "listening on": a client that waits for the
        # line (as the README says to) must find every port accepting connections.
        try:
            server = await stack.enter_async_context(sim.serve(host, port))
        except OSError as exc:
            raise ListenError("--port", shown, port, exc) from exc
        gateway = None
        if http_port is not None:
            try:
                gateway = await stack.enter_async_context(
                    sim.serve_http(host, http_port, cors_origins)
                )
            except OSError as exc:
                raise ListenError("--http-port", shown, http_port, exc) from exc
        if gateway is not None:
            print(f"connect and grpc-web on http://{shown}:{gateway.port}", flush=True)
        if saver is not None and save_every > 0:
            stack.enter_context(_cancelling(loop.create_task(saver.every(save_every))))
        print(f"listening on {shown}:{bound_port(server)}", flush=True)  # the last: all ready
        await stop.wait()
        print("shutting down", flush=True)


class _StateSaver:
    """Writes the state file; a failure is one line on stderr, never a traceback."""

    def __init__(self, sim: Simulator, path: str) -> None:
        self._sim = sim
        self._path = path

    def save(self) -> bool:
        try:
            self._sim.save_state(self._path)
        except OSError as exc:
            reason = exc.strerror or exc
            click.echo(f"error: cannot write state to {self._path}: {reason}", err=True)
            return False
        return True

    async def every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.save()


@contextlib.contextmanager
def _cancelling(task: asyncio.Task[None]) -> Iterator[None]:
    try:
        yield
    finally:
        task.cancel()


def _positive(d: int, flag: str) -> None:
    if d <= 0:
        raise ValueError(f"{flag} must be longer than 0")


class ListenError(Exception):
    """A port that could not be bound, named by the flag that asked for it."""

    def __init__(self, flag: str, host: str, port: int, exc: OSError) -> None:
        super().__init__(f"cannot listen on {host}:{port} ({flag}): {exc.strerror or exc}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
def descriptors(file: str) -> None:
    """Write the schema of every served service to FILE (- for stdout): a protobuf
    FileDescriptorSet, for tools that need one where reflection is not served (the HTTP port),
    e.g. `buf curl --schema FILE`."""
    from importlib.resources import files

    data = files("simulator._proto").joinpath("descriptors.binpb").read_bytes()
    if file == "-":
        sys.stdout.buffer.write(data)
    else:
        Path(file).write_bytes(data)


_GC_THRESHOLDS = (50_000, 20, 100)
"""Collect the youngest generation less often: a server holding 100,000 workspaces otherwise
spends most of its time in full collections (measured: benchmarks/engine_scale.py grew
superlinearly with the default thresholds, linearly with these). Set when ``serve`` starts (loading
the server stack then collects less: 3% of its start-up), kept by :func:`_tune_gc`."""


def _tune_gc() -> None:
    """What start-up made stays out of every later collection; the thresholds stay."""
    import gc

    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def _configure_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("gitpod_sim")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False
    # Every handler stream flushes after each record, so piped output is timely.


if __name__ == "__main__":
    main()
