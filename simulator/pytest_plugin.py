"""pytest plugin (``pytest11`` entry point ``gitpod_sim``): a simulated Gitpod in one fixture.

Fixtures: ``gitpod_sim`` (a fresh :class:`Simulator` per test, manual clock unless the marker says
otherwise), ``gitpod`` (domain helpers around it), ``gitpod_channel``/``gitpod_client`` (a ready
client in memory) and ``gitpod_tcp_client`` (the same over a real TCP port on 127.0.0.1, port 0);
for a client the test cannot import (grpcio, a subprocess in Go or TypeScript), ``gitpod_target``
(a server on 127.0.0.1 in a thread of its own: host, port, every user's token, the admin token)
and ``gitpod_control`` (a blocking control-plane client of it). The marker
``@pytest.mark.gitpod_sim(seed=, clock=, users=, plan=, max_time=)`` configures them.

Nothing is shared between tests (no fixed ports, files or module state), so ``pytest -n auto``
works. Time only moves in simulated time: helpers advance the clock and never sleep, and a
virtual-time guard fails a test that needs more than ``max_time`` of it (ini
``gitpod_sim_max_time``, default 48h), naming the phase the instance was stuck in.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from grpclib.client import Channel

from simulator._proto.gitpod import v1 as pb
from simulator.core.coverage import CoverageReport
from simulator.core.model import StatusChange
from simulator.core.transitions import Phase
from simulator.server.clock import ClockMode
from simulator.server.runtime import DurationLike, Simulator, bound_port, to_duration

if TYPE_CHECKING:
    from simulator.harness import ControlClient, ServerThread, Target
    from simulator.server.host import SimServer

DEFAULT_USERS = {"alice": "alice-token", "bob": "bob-token"}
DEFAULT_MAX_TIME = "48h"
STREAM_LIMIT = 10_000
_HAS_ASYNCIO = importlib.util.find_spec("pytest_asyncio") is not None
SETTLE_ROUNDS = 5000
_COVERAGE = pytest.StashKey["CoverageCollector"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gitpod_sim", "gitpod-sim simulator and contract suite")
    group.addoption(
        "--gitpod-target",
        default=None,
        metavar="HOST:PORT",
        help="run the contract suite against this server instead of in process",
    )
    group.addoption("--gitpod-token", default=None, help="a caller's token on --gitpod-target")
    group.addoption(
        "--gitpod-token2",
        default=None,
        help="a second caller's token (enables the cross-user rules)",
    )
    group.addoption(
        "--gitpod-admin-token",
        default=None,
        help="control-plane token (clock and fault rules; skipped without)",
    )
    group.addoption(
        "--gitpod-session-per-example",
        action="store_true",
        default=False,
        help="contract suite on --gitpod-target: each example in a session of its own"
        " (x-gitpod-sim-session; needs --gitpod-admin-token)",
    )
    group.addoption(
        "--gitpod-examples",
        type=int,
        default=None,
        help="contract suite: examples (call sequences) to run",
    )
    group.addoption(
        "--gitpod-steps", type=int, default=None, help="contract suite: steps (calls) per example"
    )
    group.addoption(
        "--gitpod-coverage",
        default=None,
        metavar="FILE",
        help="write the merged coverage of every simulator the fixtures made (JSON) to FILE "
        "and print its summary",
    )
    group.addoption(
        "--gitpod-coverage-fail-under",
        type=float,
        default=None,
        metavar="N",
        help="fail the run when fewer than N percent of the table's transitions were covered",
    )
    parser.addini(
        "gitpod_sim_max_time",
        default=DEFAULT_MAX_TIME,
        help="simulated time a test may use before the virtual-time guard fails it",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gitpod_sim(seed=0, clock='manual', users=None, plan=None, max_time=None, **kwargs): "
        "configure the gitpod_sim fixture's Simulator for this test",
    )
    path = config.getoption("--gitpod-coverage", None)
    under = config.getoption("--gitpod-coverage-fail-under", None)
    if path is not None or under is not None:
        collector = CoverageCollector(config, path, under)
        config.stash[_COVERAGE] = collector
        config.pluginmanager.register(collector, "gitpod_sim_coverage")


class CoverageCollector:
    """Merges the coverage of every simulator the fixtures made, across xdist workers too.

    A worker sends its merged report to the controller in ``workeroutput`` (as pytest-cov does);
    the controller (or a run without xdist) writes the JSON and prints the summary."""

    def __init__(self, config: pytest.Config, path: str | None, fail_under: float | None) -> None:
        self.config = config
        self.path = path
        self.fail_under = fail_under
        self.report = CoverageReport()
        self.simulators = 0
        self.failed_under: str | None = None

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    def add(self, report: CoverageReport, simulators: int = 1) -> None:
        self.report = self.report.merge(report)
        self.simulators += simulators

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}).get("gitpod_coverage")
        if output is not None:
            data = json.loads(output)
            self.add(CoverageReport.from_json(data["report"]), data["simulators"])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            payload = {"report": self.report.to_json(), "simulators": self.simulators}
            self.config.workeroutput["gitpod_coverage"] = json.dumps(payload)  # type: ignore[attr-defined]
            return
        if self.path is not None:
            from simulator.coverage_report import write_json

            write_json(self.report, self.path)
        percent = self.report.total("transitions").percent
        if self.fail_under is not None and percent < self.fail_under:
            self.failed_under = (
                f"gitpod-sim coverage: transitions {percent:.1f}% is below the required "
                f"{self.fail_under:g}%"
            )
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        from rich.console import Console

        from simulator.coverage_report import print_report

        terminalreporter.section("gitpod-sim coverage")
        console = Console(file=terminalreporter._tw, width=100, color_system=None)
        title = f"gitpod-sim coverage of {self.simulators} simulator(s)"
        print_report(self.report, console, title=title)
        if self.path is not None:
            terminalreporter.write_line(f"coverage written to {self.path}")
        if self.failed_under is not None:
            terminalreporter.write_line(f"FAIL {self.failed_under}")


FIXTURES = frozenset(
    {"gitpod_sim", "gitpod", "gitpod_channel", "gitpod_client", "gitpod_tcp_client",
     "gitpod_session"}
)  # fmt: skip
"""The async-capable fixtures: a coroutine test using one is marked for pytest-asyncio.
(``gitpod_target`` and ``gitpod_control`` are plain: they suit blocking tests too.)"""


@pytest.hookimpl(hookwrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Generator[None, None, None]:
    """An ``async def`` test that uses one of these fixtures or the ``gitpod_sim`` marker runs
    under pytest-asyncio as it is, without the user setting ``asyncio_mode = auto``: it gets
    ``@pytest.mark.asyncio`` before pytest makes the item (pytest-asyncio reads the mark then)."""
    if _HAS_ASYNCIO and inspect.iscoroutinefunction(obj) and _uses_gitpod(obj):
        marks = getattr(obj, "pytestmark", [])
        if not any(getattr(m, "name", None) == "asyncio" for m in marks):
            pytest.mark.asyncio(obj)
    yield


def _uses_gitpod(fn: Any) -> bool:
    marks = getattr(fn, "pytestmark", [])
    if any(getattr(m, "name", None) == "gitpod_sim" for m in marks):
        return True
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return not FIXTURES.isdisjoint(params)


def _marker_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("gitpod_sim"))):
        kwargs.update(marker.kwargs)  # the closest marker wins
    return kwargs


class GitpodHelper:
    """Domain helpers on one simulator: advance, wait for a phase, collect a stream."""

    def __init__(self, sim: Simulator, max_time: DurationLike, tokens: dict[str, str]) -> None:
        self.sim = sim
        self.tokens = tokens
        self.started_at = sim.now()
        self.max_time = to_duration(max_time)
        self.exceeded: str | None = None
        sim.add_listener(self._watch)

    # -------------------------------------------------------------- clients

    def client(self, channel: Channel, user: str | None = None) -> pb.WorkspacesServiceStub:
        """A stub for ``user`` (default: the first user) on ``channel``."""
        name = user if user is not None else next(iter(self.tokens))
        token = self.tokens[name]
        return pb.WorkspacesServiceStub(channel, metadata={"authorization": f"Bearer {token}"})

    # -------------------------------------------------------------- time

    def advance(self, delta: DurationLike) -> list[StatusChange]:
        """Move simulated time (guarded by the budget)."""
        target = self.sim.now() + to_duration(delta)
        self._check_budget(target, "advance")
        return self.sim.advance(delta)

    def run_until_idle(self) -> list[StatusChange]:
        """Advance event by event until nothing is scheduled; fails when the budget runs out."""
        changes: list[StatusChange] = []
        while (event := self.sim.engine.next_event()) is not None:
            self._check_budget(event.at, "run_until_idle (never idle)")
            changes += self.sim.advance_to_next()
        return changes

    async def wait_for_phase(
        self, instance_id: str, phase: Phase, *, within: DurationLike | None = None
    ) -> Phase:
        """Advance simulated time event by event until the instance is in ``phase``.

        Lets the loop run between events so streams see every change; never sleeps.
        """
        limit = self.sim.now() + (to_duration(within) if within is not None else self.max_time)
        limit = min(limit, self.started_at + self.max_time)
        while True:
            await self.settle()
            current = self.sim.phase_of(instance_id)
            if current is phase:
                return current
            event = self.sim.engine.next_event()
            if event is None:
                pytest.fail(
                    f"instance {instance_id} never reaches {phase.name}: it is {current.name} "
                    "and nothing more is scheduled",
                    pytrace=False,
                )
            if event.at > limit:
                pytest.fail(
                    f"virtual-time guard: instance {instance_id} still {current.name} after "
                    f"{_fmt(limit - self.started_at)} of simulated time, waiting for {phase.name}",
                    pytrace=False,
                )
            self.sim.advance_to_next()

    async def wait_for_listeners(
        self,
        instance_id: str,
        listeners: int = 1,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 (a bound on real time, checked by wait_for)
    ) -> int:
        """Return once ``listeners`` ListenToWorkspaceInstance streams are open on the instance
        (a client of this test's loop has subscribed), without moving the clock: then advance.
        Fails after ``timeout`` seconds of real time, saying what it saw."""
        from simulator.core.errors import SimError
        from simulator.server.waiting import wait_for

        try:
            seen = await wait_for(
                self.sim, instance_id=instance_id, listeners=listeners, timeout=timeout
            )
        except SimError as exc:
            pytest.fail(exc.message, pytrace=False)
        return seen.listeners

    async def settle(self) -> None:
        """Let the event loop run (no real waiting) until no handler is busy."""
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)
            if self.sim.activity.busy == 0:
                break
        for _ in range(20):  # let bytes written reach the client side of the channel
            await asyncio.sleep(0)

    async def collect_listen(
        self,
        client: pb.WorkspacesServiceStub,
        instance_id: str,
        *,
        until: Phase = Phase.STOPPED,
    ) -> list[pb.WorkspaceInstanceStatus]:
        """Follow ListenToWorkspaceInstance, advancing simulated time while the stream waits,
        until a status in ``until`` (default STOPPED, where the stream ends)."""
        statuses: list[pb.WorkspaceInstanceStatus] = []
        request = pb.ListenToWorkspaceInstanceRequest(instance_id=instance_id)

        async def follow() -> None:
            stream = client.listen_to_workspace_instance(request)
            async with contextlib.aclosing(cast(AsyncGenerator[Any, None], stream)) as it:
                async for message in it:
                    assert message.instance_status is not None
                    statuses.append(message.instance_status)
                    if message.instance_status.phase is until or len(statuses) > STREAM_LIMIT:
                        return

        task = asyncio.ensure_future(follow())
        try:
            while not task.done():
                await self.settle()
                if task.done():
                    break
                if not self.sim.activity.may_jump:
                    continue
                event = self.sim.engine.next_event()
                current = self.sim.phase_of(instance_id)
                if event is None:
                    pytest.fail(
                        f"the stream of {instance_id} waits in {current.name}, nothing is "
                        f"scheduled, and {until.name} never comes",
                        pytrace=False,
                    )
                if event.at - self.started_at > self.max_time:
                    pytest.fail(
                        f"virtual-time guard: instance {instance_id} stuck in {current.name}: "
                        f"{until.name} needs more than {_fmt(self.max_time)} of simulated time",
                        pytrace=False,
                    )
                self.sim.advance_to_next()
            task.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return statuses

    # -------------------------------------------------------------- the guard

    def _check_budget(self, at: int, what: str) -> None:
        if at - self.started_at > self.max_time:
            pytest.fail(
                f"virtual-time guard: {what} needs more than {_fmt(self.max_time)} of simulated "
                f"time; {self.stuck_phases()}",
                pytrace=False,
            )

    def stuck_phases(self) -> str:
        active = [
            f"{inst.id} in {inst.phase.name}"
            for inst in self.sim.engine.instances.values()
            if inst.status.is_active
        ]
        return "stuck: " + ", ".join(active) if active else "no active instance"

    def _watch(self, event: object) -> None:
        """In realtime/autojump mode time moves by itself: stop it at the budget."""
        if self.exceeded is not None or not isinstance(event, StatusChange):
            return
        if event.at - self.started_at > self.max_time:
            self.exceeded = (
                f"virtual-time guard: more than {_fmt(self.max_time)} of simulated time passed; "
                f"instance {event.instance_id} was in {event.status.phase.name}; "
                f"{self.stuck_phases()}"
            )
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(self._halt)

    def _halt(self) -> None:
        self.sim.set_clock(ClockMode.MANUAL)
        self.sim.hub.close_all(self.exceeded or "virtual-time guard")


def _fmt(duration: int) -> str:
    seconds = duration // 1_000_000
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


@pytest.fixture
def gitpod_sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """A fresh in-process simulator for this test (manual clock unless the marker says not)."""
    kwargs = _marker_kwargs(request)
    kwargs.pop("max_time", None)
    kwargs.setdefault("users", dict(DEFAULT_USERS))
    sim = Simulator(**kwargs)
    yield sim
    collector = request.config.stash.get(_COVERAGE, None)
    if collector is not None:  # after the channels that depend on it are closed
        collector.add(sim.coverage())


@pytest.fixture
def gitpod(request: pytest.FixtureRequest, gitpod_sim: Simulator) -> Iterator[GitpodHelper]:
    """Domain helpers around ``gitpod_sim``, with the virtual-time guard."""
    max_time = _marker_kwargs(request).get("max_time") or request.config.getini(
        "gitpod_sim_max_time"
    )
    tokens = {user.id: user.token for user in gitpod_sim.users.values()}
    helper = GitpodHelper(gitpod_sim, max_time, tokens)
    yield helper
    if helper.exceeded is not None:
        pytest.fail(helper.exceeded, pytrace=False)


if _HAS_ASYNCIO:  # the async fixtures and tests need it
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def gitpod_channel(gitpod_sim: Simulator) -> AsyncIterator[Channel]:
        """A grpclib channel to ``gitpod_sim`` in memory (no sockets)."""
        async with gitpod_sim.channel() as channel:
            yield channel

    @pytest_asyncio.fixture
    async def gitpod_client(
        gitpod: GitpodHelper, gitpod_channel: Channel
    ) -> pb.WorkspacesServiceStub:
        """A WorkspacesService client of the first user, in memory."""
        return gitpod.client(gitpod_channel)

    @pytest_asyncio.fixture
    async def gitpod_tcp_client(
        gitpod: GitpodHelper, gitpod_sim: Simulator
    ) -> AsyncIterator[pb.WorkspacesServiceStub]:
        """A client of the first user over a real TCP port on 127.0.0.1 (a free port)."""
        async with gitpod_sim.serve("127.0.0.1", 0) as server:
            channel = Channel("127.0.0.1", bound_port(server))
            try:
                yield gitpod.client(channel)
            finally:
                channel.close()


@pytest.fixture
def gitpod_server_thread(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """The server behind ``gitpod_target``: a fresh simulator per test (the marker's seed,
    clock, users and plan; default: seed 0, manual clock, alice and bob), served on 127.0.0.1 on
    a free port by an event loop in a thread of its own."""
    from simulator.harness import ServerThread

    kwargs = _marker_kwargs(request)
    kwargs.pop("max_time", None)
    kwargs.setdefault("users", dict(DEFAULT_USERS))
    server = ServerThread(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
    collector = request.config.stash.get(_COVERAGE, None)
    if collector is not None and server.sim is not None:
        collector.add(server.sim.coverage())


@pytest.fixture
def gitpod_target(gitpod_server_thread: ServerThread) -> Target:
    """Where any client finds this test's simulator: ``host`` (127.0.0.1), ``port``,
    ``address`` (``host:port``), ``tokens`` (user id -> API token), ``admin_token``,
    ``metadata(user)`` (grpcio's authorization pairs) and ``env(user)`` (the same as
    ``GITPOD_SIM_*`` environment variables for a subprocess)."""
    return gitpod_server_thread.target()


@pytest.fixture
def gitpod_control(
    gitpod_server_thread: ServerThread, gitpod_target: Target
) -> Iterator[ControlClient]:
    """The control plane of ``gitpod_target``, blocking (see :class:`simulator.harness.
    ControlClient`): ``advance``, ``fault``, ``wait_for`` (``await_for`` in an async test),
    ``journal``, ``rpcs``, ``reset``, ``set_clock``, and ``call`` for any other method."""
    from simulator.harness import ControlClient

    client = ControlClient(gitpod_server_thread, gitpod_target)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def gitpod_server(request: pytest.FixtureRequest) -> SimServer | None:
    """The in-process server that ``gitpod_session`` makes sessions on (one per xdist worker);
    None with ``--gitpod-target`` (the sessions are made on that server)."""
    if request.config.getoption("--gitpod-target", None):
        return None
    from simulator.server.host import SimServer
    from simulator.server.runtime import ADMIN_TOKEN_PREFIX, new_secret_token

    return SimServer(Simulator(admin_token=new_secret_token(ADMIN_TOKEN_PREFIX)))


_RUN = os.urandom(3).hex()
"""Tells this run's sessions from another run's on a shared server."""


def _session_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    kwargs = _marker_kwargs(request)
    clock = kwargs.get("clock", "manual")
    return {
        "seed": kwargs.get("seed", 0),
        "clock": clock.value if isinstance(clock, ClockMode) else str(clock),
        "users": dict(kwargs.get("users") or DEFAULT_USERS),
    }


if _HAS_ASYNCIO:
    from simulator.session_client import Session, open_session, session_name

    @pytest_asyncio.fixture
    async def gitpod_session(
        request: pytest.FixtureRequest, gitpod_server: SimServer | None
    ) -> AsyncIterator[Session]:
        """A session of its own for this test on a shared server: the in-process one, or
        ``--gitpod-target`` (with ``--gitpod-admin-token``). Named after the xdist worker and
        the test, deleted at teardown, so ``pytest -n auto`` against one server works. The
        marker's ``seed``, ``clock`` and ``users`` configure it (default: seed 0, manual, alice
        and bob)."""
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        name = session_name(worker, _RUN, request.node.name)
        settings = _session_settings(request)
        if gitpod_server is not None:
            async with (
                gitpod_server.channel() as channel,
                open_session(channel, gitpod_server.admin_token, name, **settings) as session,
            ):
                session.sim = gitpod_server.session(name)
                yield session
                await _collect_session_coverage(request, session)
            return
        target = request.config.getoption("--gitpod-target")
        admin = request.config.getoption("--gitpod-admin-token", None)
        if not admin:
            pytest.fail("gitpod_session on --gitpod-target needs --gitpod-admin-token", False)
        host, _, port = str(target).rpartition(":")
        channel = Channel(host.strip("[]"), int(port))
        try:
            async with open_session(channel, admin, name, **settings) as session:
                yield session
                await _collect_session_coverage(request, session)
        finally:
            channel.close()

    async def _collect_session_coverage(request: pytest.FixtureRequest, session: Session) -> None:
        """With ``--gitpod-coverage``: the session's coverage, read through its control plane
        (``GetCoverage`` with the session key) before the session is deleted."""
        collector = request.config.stash.get(_COVERAGE, None)
        if collector is None:
            return
        from grpclib.exceptions import GRPCError

        from simulator._proto.gitpod.simulator import v1 as spb

        try:
            answer = await session.control().get_coverage(spb.GetCoverageRequest())
        except GRPCError as exc:
            request.node.warn(
                pytest.PytestWarning(
                    f"gitpod-sim coverage of session {session.name} not read: "
                    f"{exc.status.name} {exc.message}"
                )
            )
            return
        collector.add(CoverageReport.from_json(json.loads(answer.coverage_json)))
