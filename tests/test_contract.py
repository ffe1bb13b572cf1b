"""The contract suite passes on the real simulator and fails on every broken one.

Each broken simulator (tests/broken_simulators.py) is judged by the suite's own state machine
under the CI settings (derandomised, no shrinking, so each proof is quick and repeatable); one
run checks that the printed sequence is code that fails again when pasted.

Over TCP: the real server (a ``gitpod-sim serve`` process) passes in each clock mode, with and
without the control plane, at the CI budget, twice in a row against the same process (one
test per clock and token, so xdist spreads them); it also passes while another client works on
it (a smaller budget: :data:`TCP_EXAMPLES` x :data:`TCP_STEPS`); every broken simulator served
over TCP (autojump and realtime) is caught with and without the admin token within one CI budget.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from broken_simulators import BROKEN, CAUSAL_AND_FOREIGN, served
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from server_process import ServerProcess, command

from simulator import Simulator
from simulator._proto.gitpod import v1 as pb
from simulator.contract import (
    CI_EXAMPLES,
    CI_STEPS,
    ContractViolation,
    RemoteOptions,
    contract_settings,
    in_process,
    remote,
    run_contract,
)
from simulator.contract.target import ListingCodec
from simulator.server.codec import SimCodec

pytest_plugins = ["pytester"]


def test_real_simulator_keeps_the_contract() -> None:
    started = time.monotonic()
    run_contract(in_process(), contract_settings(CI_EXAMPLES, CI_STEPS))
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_contract_suite_catches_broken_simulator(name: str) -> None:
    machine = in_process(BROKEN[name], f"Broken_{name}")
    with pytest.raises(ContractViolation):
        run_contract(machine, contract_settings(CI_EXAMPLES, CI_STEPS, shrink=False))


def test_failure_prints_a_pasteable_sequence() -> None:
    """Shrinking is Hypothesis' (slow on 2 cores): here only that the printed code reruns."""
    factory: Callable[[], Simulator] = BROKEN["cross_user_leak"]
    machine = in_process(factory, "LeakyContract")
    with pytest.raises(ContractViolation) as info:
        run_contract(machine, contract_settings(CI_EXAMPLES, CI_STEPS, shrink=False))
    notes = [n for n in getattr(info.value, "__notes__", []) if not n.startswith("Failing")]
    code = "\n".join(notes)
    assert code.startswith("state = LeakyContract()"), code
    assert code.rstrip().endswith("state.teardown()"), code
    with pytest.raises(ContractViolation):
        exec(code, {"LeakyContract": machine})  # pasted as is, it fails again


def test_contract_suite_runs_against_a_server_without_control_plane(
    pytester: pytest.Pytester,
) -> None:
    """--gitpod-target: API calls only (clock and fault rules skip), two users, autojump."""
    server = ServerProcess("--clock", "autojump", "--quiet", "--user", "a=ta", "--user", "b=tb")
    try:
        result = pytester.runpytest_subprocess(
            "--pyargs",
            "simulator.contract",
            "-p",
            "no:cacheprovider",
            "--gitpod-target",
            server.address,
            "--gitpod-token",
            "ta",
            "--gitpod-token2",
            "tb",
            "--gitpod-examples",
            "3",
            "--gitpod-steps",
            "12",
            "-W",
            "default",
        )
    finally:
        server.close()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*clock and fault rules skipped*"])


def test_pyargs_runs_in_process_by_default(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pyargs", "simulator.contract", "-p", "no:cacheprovider",
        "--gitpod-examples", "3", "--gitpod-steps", "10",
    )  # fmt: skip
    result.assert_outcomes(passed=1)


def test_contract_suite_steers_a_server_through_its_control_plane(
    pytester: pytest.Pytester,
) -> None:
    """--gitpod-admin-token: the clock and fault rules run remotely over SimulatorService."""
    server = ServerProcess(
        "--clock", "manual", "--quiet", "--user", "a=ta", "--user", "b=tb", "--admin-token", "adm"
    )
    try:
        result = pytester.runpytest_subprocess(
            "--pyargs", "simulator.contract", "-p", "no:cacheprovider",
            "--gitpod-target", server.address, "--gitpod-token", "ta", "--gitpod-token2", "tb",
            "--gitpod-admin-token", "adm", "--gitpod-examples", "3", "--gitpod-steps", "15",
            "-W", "default",
        )  # fmt: skip
        journal = subprocess.run(
            [*command("ctl", "--target", server.address, "--admin-token", "adm", "journal")],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    finally:
        server.close()
    result.assert_outcomes(passed=1)
    assert "clock and fault rules skipped" not in result.stdout.str()
    assert "SimulatorService/Advance" in journal or "SimulatorService/AddFault" in journal


# ---------------------------------------------------------------------------- over TCP

TCP_EXAMPLES = 3
TCP_STEPS = 12
"""The budget of the noisy-neighbour runs (the real-server proof runs the CI budget)."""

CLOCKS = {
    "manual": ("--clock", "manual"),
    "realtime": ("--clock", "realtime", "--speed", "50"),
    "autojump": ("--clock", "autojump"),
}
SERVER_USERS = ("--user", "a=ta", "--user", "b=tb", "--admin-token", "adm")

NEEDS_CONTROL: frozenset[str] = frozenset()
"""Broken simulators the remote suite catches only with the admin token (none today: a moving
clock reaches every phase on its own, and the causal checks need no control)."""


def _options(address: str, admin: bool, tokens: tuple[str, str] = ("ta", "tb")) -> RemoteOptions:
    host, _, port = address.rpartition(":")
    return RemoteOptions(host, int(port), tokens[0], tokens[1], "adm" if admin else None)


def _tcp_run(address: str, admin: bool, tokens: tuple[str, str] = ("ta", "tb")) -> None:
    settings = contract_settings(TCP_EXAMPLES, TCP_STEPS, shrink=False)
    report = run_contract(remote(_options(address, admin, tokens)), settings)
    assert report.steps > 0 and report.examples >= TCP_EXAMPLES


@pytest.mark.timeout(240)
@pytest.mark.parametrize("admin", [False, True], ids=["api-only", "control-plane"])
@pytest.mark.parametrize("clock", sorted(CLOCKS))
def test_real_server_passes_the_ci_budget_over_tcp_twice(
    clock: str, admin: bool, record_property: Callable[[str, object], None]
) -> None:
    """The CI budget (30 examples of up to 30 steps), twice in a row against the same server
    process, no reset: the second run meets everything the first one left."""
    server = ServerProcess(*CLOCKS[clock], "--quiet", *SERVER_USERS)
    try:
        for run in (1, 2):
            settings = contract_settings(CI_EXAMPLES, CI_STEPS, shrink=False)
            report = run_contract(remote(_options(server.address, admin)), settings)
            assert report.examples >= CI_EXAMPLES and report.steps >= CI_EXAMPLES * CI_STEPS // 2
            record_property(f"run {run}", report.describe())
    finally:
        server.close()


class Neighbour:
    """Another client on the same server and the same users: creates, stops, lists and reads
    workspaces in a loop of its own (a thread with its own event loop) until told to stop."""

    def __init__(self, address: str, tokens: tuple[str, ...]) -> None:
        self.address = address
        self.tokens = tokens
        self.calls = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Neighbour:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        host, _, port = self.address.rpartition(":")
        channel = Channel(host, int(port))
        stubs = [
            pb.WorkspacesServiceStub(channel, metadata={"authorization": f"Bearer {t}"})
            for t in self.tokens
        ]
        mine: list[tuple[int, str]] = []
        try:
            for n in range(100_000):
                if self._stop.is_set():
                    return
                who = n % len(stubs)
                s = stubs[who]
                step = n % 4
                try:
                    if step == 0:
                        made = await s.create_and_start_workspace(
                            pb.CreateAndStartWorkspaceRequest(
                                context_url=f"https://github.com/neighbour/repo-{n % 7}"
                            )
                        )
                        mine.append((who, made.workspace_id))
                    elif step == 1 and mine:
                        owner, wsid = mine[-1]
                        stream = stubs[owner].stop_workspace(
                            pb.StopWorkspaceRequest(workspace_id=wsid)
                        )
                        try:
                            await asyncio.wait_for(anext(stream), 2)
                        finally:
                            await stream.aclose()  # type: ignore[attr-defined]
                    elif step == 2:
                        page = pb.Pagination(page_size=4)
                        await s.list_workspaces(pb.ListWorkspacesRequest(pagination=page))
                    elif mine:
                        owner, wsid = mine[n % len(mine)]
                        await stubs[owner].get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))
                except (GRPCError, TimeoutError, StopAsyncIteration) as exc:
                    self.errors.append(repr(exc))
                self.calls += 1
                await asyncio.sleep(0.005)
        finally:
            channel.close()


@pytest.mark.parametrize(
    ("clock", "admin"), [("autojump", False), ("manual", True)], ids=["autojump", "manual-control"]
)
def test_real_server_keeps_the_contract_with_a_noisy_neighbour(clock: str, admin: bool) -> None:
    """A second client creates, stops and lists workspaces of the same users meanwhile."""
    server = ServerProcess(*CLOCKS[clock], "--quiet", *SERVER_USERS)
    try:
        with Neighbour(server.address, ("ta", "tb")) as neighbour:
            _tcp_run(server.address, admin)
            _tcp_run(server.address, admin)
        assert neighbour.calls > 20, neighbour.errors[:5]
    finally:
        server.close()


@pytest.mark.parametrize("clock", ["autojump", "realtime"])
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_remote_suite_catches_broken_simulator_over_tcp(name: str, clock: str) -> None:
    """Served over TCP and judged without the admin token, then with it (same server)."""
    options: dict[str, Any] = {"clock": clock, "admin_token": "adm"}
    if clock == "realtime":
        options["speed"] = 400.0  # a building lifecycle reaches RUNNING in about 0.2 s
    tokens = ("contract-alice", "contract-bob")
    with served(BROKEN[name](**options)) as address:
        for admin in (False, True):
            if name in NEEDS_CONTROL and not admin:
                continue
            settings = contract_settings(CI_EXAMPLES, CI_STEPS, shrink=False)
            with pytest.raises(ContractViolation):
                run_contract(remote(_options(address, admin, tokens)), settings)


def test_the_causal_and_foreign_broken_simulators_exist() -> None:
    assert len(CAUSAL_AND_FOREIGN) >= 3
    assert set(CAUSAL_AND_FOREIGN) <= set(BROKEN)


def test_listing_codec_answers_what_the_channel_codec_answers() -> None:
    """The client's codec reads a listing's framing itself and decodes each distinct item once;
    what it does not read (an unknown field, a bad page token, truncated bytes) is the channel
    codec's, which decodes or refuses the whole answer as before."""

    async def listing() -> bytes:
        sim = Simulator(seed=0, users={"alice": "ta"})
        async with sim.channel() as channel:
            stub = pb.WorkspacesServiceStub(channel, metadata={"authorization": "Bearer ta"})
            for repo in ("one", "two", "three"):
                request = pb.CreateAndStartWorkspaceRequest(context_url=f"github.com/acme/{repo}")
                await stub.create_and_start_workspace(request)
            sim.advance(30)
            answer = await stub.list_workspaces(
                pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=2))
            )
        assert answer.next_page_token and len(answer.result) == 2
        return bytes(answer)

    data = asyncio.run(listing())
    inner = SimCodec()
    codec = ListingCodec(inner)
    expected = inner.decode(data, pb.ListWorkspacesResponse)
    first = codec.decode(data, pb.ListWorkspacesResponse)
    again = codec.decode(data, pb.ListWorkspacesResponse)
    assert first == expected and again == expected
    assert all(a is b for a, b in zip(first.result, again.result, strict=True))
    status = first.result[0].last_active_instances.status  # a whole item: workspace, instance
    assert status.phase is not pb.WorkspaceInstanceStatusPhase.UNSPECIFIED and status.url

    unknown = data + b"\x18\x07"  # field 3, a varint: not a listing's; the inner codec's
    assert codec.decode(unknown, pb.ListWorkspacesResponse) == expected
    for bad in (data[:-3], b"\x0a\x02\xff\xfe" + data):
        with pytest.raises(GRPCError) as refused:
            codec.decode(bad, pb.ListWorkspacesResponse)
        with pytest.raises(GRPCError) as before:
            inner.decode(bad, pb.ListWorkspacesResponse)
        assert refused.value.status is before.value.status is Status.INVALID_ARGUMENT
