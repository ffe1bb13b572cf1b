"""Coverage: the catalogue follows the table, a fixed call sequence gives exact counts, unexpected
pairs are flagged, reports merge by adding counts and survive JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from grpc_helpers import ALICE, BOB, REPO, active_instance_id, collect, create, settle, stub_for
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator.core import coverage_catalogue as cat
from simulator.core.coverage import CATALOGUE, CoverageReport
from simulator.core.errors import AlreadyExists
from simulator.core.faults import (
    FAULT_NAMES,
    WORKSPACES_METHODS,
    FailPhase,
    RpcError,
    Target,
    TargetKind,
)
from simulator.core.transitions import (
    EVENT_TRIGGERED_TRANSITIONS,
    INITIAL_PHASES,
    Trigger,
    next_phase,
)

_COUNTED = ("count", "expected", "injected")


def nonzero(report: CoverageReport) -> dict[str, Any]:
    """Every item with a count, per group, as the JSON names them."""
    data = report.to_json()
    out: dict[str, Any] = {}
    for group in cat.GROUPS:
        value = data[group]
        if isinstance(value, dict):
            out[group] = {k: n for k, n in value.items() if n}
        else:
            out[group] = {
                (*(v for k, v in item.items() if k not in _COUNTED), item["count"])
                for item in value
                if item["count"]
            }
    return out


# ---------------------------------------------------------------------------- the catalogue


def test_catalogue_transitions_are_the_table_and_the_starts() -> None:
    table = [
        (phase.name, target.name, trigger.value)
        for phase, triggers in EVENT_TRIGGERED_TRANSITIONS.items()
        for trigger, target in triggers.items()
    ]
    starts = [(None, p.name, "start") for p in INITIAL_PHASES]
    assert sorted(cat.TRANSITIONS, key=repr) == sorted(table + starts, key=repr)
    for start, to, trigger in cat.TRANSITIONS:
        if start is not None:
            assert next_phase(Phase[start], Trigger(trigger)) is Phase[to]
    assert len(set(cat.TRANSITIONS)) == len(cat.TRANSITIONS)


def test_catalogue_names_as_the_proto_and_the_fault_registry_spell_them() -> None:
    assert set(cat.PHASES) == {p.name for p in Phase} - {"UNSPECIFIED"}
    assert not any(name.startswith("PHASE_") for name in cat.PHASES)
    assert cat.FAULT_KINDS == FAULT_NAMES  # the registry: what scenarios and ctl accept
    assert tuple(cat.EXPECTED_CODES) == WORKSPACES_METHODS
    codes = {s.name for s in Status}
    assert all(set(c) <= codes for c in cat.EXPECTED_CODES.values())
    assert set(CATALOGUE) == set(cat.GROUPS)


def test_an_empty_report_lists_every_item_with_count_zero() -> None:
    data = CoverageReport().to_json()
    assert len(data["transitions"]) == len(cat.TRANSITIONS)
    assert all(t["count"] == 0 and t["expected"] for t in data["transitions"])
    assert data["phases"] == dict.fromkeys(cat.PHASES, 0)
    assert data["faults"] == dict.fromkeys(cat.FAULT_KINDS, 0)
    assert {(r["method"], r["code"]) for r in data["rpcs"]} == {
        (m, c) for m, codes in cat.EXPECTED_CODES.items() for c in codes
    }
    assert data["totals"]["transitions"] == {"hit": 0, "of": len(cat.TRANSITIONS), "unexpected": 0}
    assert CoverageReport().missed()[0] == ("transitions", "(start) -> IMAGEBUILD (start)")


# ---------------------------------------------------------------------------- a fixed sequence


async def fixed_sequence(sim: Simulator, alice: pb.WorkspacesServiceStub, anon: Any) -> None:
    """A first start with an image build to RUNNING, a stop followed to STOPPED, a replayed build
    log, refused calls, a second start that fails in CREATING (fault), a paged listing."""
    ws = await create(alice)
    inst = await active_instance_id(alice, ws)
    sim.advance("2m")
    stop = asyncio.ensure_future(
        collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id=ws)))
    )
    await settle(lambda: sim.phase_of(inst) is Phase.STOPPING)
    sim.advance("5s")
    assert len(await stop) == 2
    await collect(
        alice.listen_to_image_build_logs(pb.ListenToImageBuildLogsRequest(instance_id=inst))
    )
    get = pb.GetWorkspaceRequest
    for call, code in (
        (alice.get_workspace(get(workspace_id="nope")), Status.INVALID_ARGUMENT),
        (alice.get_workspace(get(workspace_id="aa-bb-cccccccc")), Status.NOT_FOUND),
        (collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id=ws))),
         Status.FAILED_PRECONDITION),
        (anon.list_workspaces(pb.ListWorkspacesRequest()), Status.UNAUTHENTICATED),
    ):  # fmt: skip
        with pytest.raises(GRPCError) as info:
            await call
        assert info.value.status is code
    second = await create(alice, "https://github.com/acme/other")
    sim.add_fault(FailPhase(Phase.CREATING, "pull failed"), Target.of(TargetKind.WORKSPACE, second))
    sim.advance("2m")
    first = await alice.list_workspaces(
        pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=1))
    )
    page = pb.Pagination(page_size=1, page_token=first.next_page_token)
    await alice.list_workspaces(pb.ListWorkspacesRequest(pagination=page))


EXPECTED_COUNTS: dict[str, Any] = {
    "transitions": set(
        [
            (None, "IMAGEBUILD", "start", 2),
            ("IMAGEBUILD", "PENDING", "step-done", 2),
            ("PENDING", "CREATING", "step-done", 2),
            ("CREATING", "INITIALIZING", "step-done", 1),
            ("INITIALIZING", "RUNNING", "step-done", 1),
            ("RUNNING", "STOPPING", "stop-requested", 1),
            ("STOPPING", "STOPPED", "step-done", 1),
            ("CREATING", "STOPPED", "failed", 1),
        ]
    ),
    "phases": {
        "IMAGEBUILD": 2,
        "PENDING": 2,
        "CREATING": 2,
        "INITIALIZING": 1,
        "RUNNING": 1,
        "STOPPING": 1,
        "STOPPED": 2,
    },
    "conditions": {"stopped-by-request": 1, "failed:CREATING": 1},
    "rpcs": set(
        [
            ("CreateAndStartWorkspace", "OK", 2),
            ("GetActiveWorkspaceInstance", "OK", 1),
            ("StopWorkspace", "OK", 1),
            ("StopWorkspace", "FAILED_PRECONDITION", 1),
            ("ListenToImageBuildLogs", "OK", 1),
            ("GetWorkspace", "INVALID_ARGUMENT", 1),
            ("GetWorkspace", "NOT_FOUND", 1),
            ("ListWorkspaces", "UNAUTHENTICATED", 1),
            ("ListWorkspaces", "OK", 2),
        ]
    ),
    "streams": {("StopWorkspace", "completed", 1), ("ListenToImageBuildLogs", "completed", 1)},
    "build_logs": {"replayed": 1},
    "faults": {"fail-creating": 1},
    "features": {"paging": 1},
}


async def test_a_fixed_call_sequence_gives_exact_counts(sim: Simulator) -> None:
    async with sim.channel() as channel:
        await fixed_sequence(sim, stub_for(channel, ALICE), stub_for(channel, None))
    report = sim.coverage()
    assert nonzero(report) == EXPECTED_COUNTS
    assert report.unexpected() == []
    totals = report.to_json()["totals"]
    assert totals["transitions"] == {"hit": 8, "of": len(cat.TRANSITIONS), "unexpected": 0}
    assert totals["faults"]["hit"] == 1
    assert ("transitions", "(start) -> PENDING (start)") in report.missed()


async def test_live_build_log_shared_reads_replays_and_client_cancel(sim: Simulator) -> None:
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
        ws = await create(alice)
        inst = await active_instance_id(alice, ws)
        sim.share(ws)
        await bob.get_workspace(pb.GetWorkspaceRequest(workspace_id=ws))
        logs = asyncio.ensure_future(
            collect(bob.listen_to_image_build_logs(pb.ListenToImageBuildLogsRequest(instance_id=inst)))
        )  # fmt: skip
        await settle(lambda: sim.activity.waiting > 0)
        sim.advance("61s")
        assert await logs
        listen = asyncio.ensure_future(
            collect(alice.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=inst)))
        )  # fmt: skip
        await settle(lambda: sim.activity.waiting > 0)
        listen.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listen
        await settle(lambda: sim.activity.busy == 0)
        for _ in range(2):
            await alice.start_workspace(
                pb.StartWorkspaceRequest(workspace_id=ws, idempotency_token="t")
            )
    counts = nonzero(sim.coverage())
    assert counts["build_logs"] == {"live": 1}
    assert counts["conditions"] == {"admission-changed": 1}
    assert counts["features"] == {
        "shared-read:GetWorkspace": 1,
        "shared-read:ListenToImageBuildLogs": 1,
        "idempotent-replay:StartWorkspace": 1,
    }
    assert ("ListenToWorkspaceInstance", "client-cancel", 1) in counts["streams"]
    assert not any(r[0] == "ListenToWorkspaceInstance" for r in counts["rpcs"])


# ---------------------------------------------------------------------------- flags


async def test_an_unexpected_pair_is_flagged_and_an_injected_one_is_not(sim: Simulator) -> None:
    def broken(caller: Any, workspace_id: str) -> Any:
        raise AlreadyExists("a bug: GetWorkspace never answers ALREADY_EXISTS")

    sim.engine.get_workspace = broken  # type: ignore[method-assign]
    sim.add_fault(
        RpcError("/gitpod.v1.WorkspacesService/ListWorkspaces", "UNAVAILABLE", "down"),
        Target.of(TargetKind.ANY),
        count=1,
    )
    async with sim.channel() as channel:
        alice = stub_for(channel, ALICE)
        for call in (
            alice.get_workspace(pb.GetWorkspaceRequest(workspace_id="aa-bb-cccccccc")),
            alice.list_workspaces(pb.ListWorkspacesRequest()),
        ):
            with pytest.raises(GRPCError):
                await call
    report = sim.coverage()
    assert report.unexpected() == [("rpcs", "GetWorkspace ALREADY_EXISTS", 1)]
    rows = {(r["method"], r["code"]): r for r in report.to_json()["rpcs"]}
    assert rows["GetWorkspace", "ALREADY_EXISTS"] == {
        "method": "GetWorkspace", "code": "ALREADY_EXISTS", "count": 1, "expected": False,
    }  # fmt: skip
    assert rows["ListWorkspaces", "UNAVAILABLE"]["injected"] is True
    assert report.to_json()["totals"]["rpcs"]["unexpected"] == 1
    assert report.to_json()["faults"]["rpc-error"] == 1


def test_a_phase_change_outside_the_table_is_flagged() -> None:
    from broken_simulators import skipped_phase

    sim = skipped_phase()
    sim.add_user("carol", "tok-carol")
    ws = sim.engine.create_workspace(sim.engine.users["carol"], context_url=REPO)
    sim.advance("2m")
    assert sim.phase_of(ws.active_instance_id or "") is Phase.RUNNING
    assert ("transitions", "CREATING -> RUNNING (step-done)", 1) in sim.coverage().unexpected()


# ---------------------------------------------------------------------------- combining


def report_of(run: int) -> CoverageReport:
    sim = Simulator(seed=run, users={"alice": ALICE})
    user = sim.engine.users["alice"]
    for _ in range(run):
        sim.engine.create_workspace(user, context_url=REPO)
    sim.advance("2m")
    return sim.coverage()


def test_merging_two_runs_adds_counts_and_survives_json() -> None:
    one, two = report_of(1), report_of(2)
    merged = one.merge(two)
    start = (None, "IMAGEBUILD", "start")
    assert (one.transitions[start], two.transitions[start], merged.transitions[start]) == (1, 2, 3)
    assert merged.phases["RUNNING"] == 3
    again = CoverageReport.from_json(json.loads(json.dumps(merged.to_json())))
    assert again.to_json() == merged.to_json()
    assert CoverageReport.merge_all([one, two]).to_json() == merged.to_json()
    with pytest.raises(ValueError, match="not a gitpod-sim coverage report"):
        CoverageReport.from_json({"transitions": []})


def test_coverage_survives_a_reset_and_reset_coverage_starts_again() -> None:
    sim = Simulator(seed=1, users={"alice": ALICE})
    sim.engine.create_workspace(sim.engine.users["alice"], context_url=REPO)
    sim.reset()
    assert sim.coverage().phases == {"IMAGEBUILD": 1}
    sim.reset_coverage()
    assert sim.coverage().to_json() == CoverageReport().to_json()


# ---------------------------------------------------------------------------- over TCP


async def test_the_same_sequence_over_tcp_read_through_ctl_coverage_json(tmp_path: Any) -> None:
    from grpclib.client import Channel
    from server_process import command

    from simulator.server.runtime import bound_port

    sim = Simulator(seed=1, users={"alice": ALICE, "bob": BOB}, admin_token="adm")
    async with sim.serve("127.0.0.1", 0) as server:
        channel = Channel("127.0.0.1", bound_port(server))
        try:
            await fixed_sequence(sim, stub_for(channel, ALICE), stub_for(channel, None))
        finally:
            channel.close()
        target = f"127.0.0.1:{bound_port(server)}"
        page = tmp_path / "coverage.html"
        ctl = ("ctl", "--target", target, "--admin-token", "adm", "coverage")
        proc = await asyncio.create_subprocess_exec(
            *command(*ctl, "--json", "--html", str(page)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        reset = await asyncio.create_subprocess_exec(
            *command(*ctl, "reset"), stdout=asyncio.subprocess.PIPE
        )
        assert (await asyncio.wait_for(reset.communicate(), 60))[0] == b"coverage reset\n"
    report = CoverageReport.from_json(json.loads(out))
    assert nonzero(report) == EXPECTED_COUNTS
    assert "(start) -&gt; PENDING (start)" in page.read_text(encoding="utf-8")
    assert sim.coverage().to_json() == CoverageReport().to_json()


def test_serve_writes_the_coverage_at_clean_shutdown(tmp_path: Any) -> None:
    import grpc
    from server_process import ServerProcess

    file = tmp_path / "coverage.json"
    server = ServerProcess("--user", "alice=tok", "--coverage", str(file), "--quiet")
    try:
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary("/gitpod.v1.WorkspacesService/GetWorkspace")
            with pytest.raises(grpc.RpcError) as info:
                call(b"", metadata=(("authorization", "Bearer nobody"),), timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert server.stop() == 0
        assert any(line.startswith(f"coverage written to {file}") for line in server.lines)
    finally:
        server.close()
    data = json.loads(file.read_text(encoding="utf-8"))
    hits = [(r["method"], r["code"], r["count"]) for r in data["rpcs"] if r["count"]]
    assert hits == [("GetWorkspace", "UNAUTHENTICATED", 1)]


# ---------------------------------------------------------------------------- the HTML page


def test_the_html_page_is_valid_self_contained_and_names_every_missed_item() -> None:
    from html.parser import HTMLParser

    from simulator.core.coverage import label
    from simulator.coverage_report import to_html

    report = report_of(1)
    report.rpcs["GetWorkspace", "INTERNAL"] = 1
    page = to_html(report)

    class Checker(HTMLParser):
        VOID = frozenset({"meta", "br", "link", "img", "hr", "input"})

        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []
            self.text: list[str] = []
            self.external: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.external += [v or "" for k, v in attrs if k in ("src", "href")]
            if tag not in self.VOID:
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
            self.open.pop()

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    checker = Checker()
    checker.feed(page)
    checker.close()
    assert page.startswith("<!DOCTYPE html>")
    assert checker.open == [] and checker.external == []
    assert "<script" not in page
    text = "".join(checker.text)
    missed = report.missed()
    assert missed and all(item in text for _, item in missed)
    assert f"Never exercised ({len(missed)})" in text
    assert "GetWorkspace INTERNAL" in text and "UNEXPECTED" in text
    assert label("rpcs", ("GetWorkspace", "OK")) in text


def test_ctl_coverage_prints_the_table_then_every_missed_item() -> None:
    from rich.console import Console

    from simulator.coverage_report import print_report

    console = Console(width=100, record=True, color_system=None)
    print_report(report_of(1), console)
    text = console.export_text()
    assert "transitions (from, to, trigger)" in text
    assert f"never exercised ({len(report_of(1).missed())}):" in text
    assert "    RUNNING -> STOPPING (stop-requested)" in text
    assert "IMAGEBUILD -> PENDING (step-done)" not in text.split("never exercised")[1]


# ---------------------------------------------------------------------------- shipped scenarios

SHIPPED = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.toml"))


async def test_the_shipped_scenarios_cover_every_transition_and_every_expected_rpc_code() -> None:
    """The README's figure: every transition of the table (IMAGEBUILD's timeout since scenario
    17), every condition and every expected (RPC, code) pair, nothing unexpected."""
    from simulator.scenario.cli import run_scenario
    from simulator.scenario.schema import load

    outcomes = [await run_scenario(load(f)) for f in SHIPPED]
    assert all(o.ok for o in outcomes), [o.failure for o in outcomes if not o.ok]
    report = CoverageReport.merge_all(o.coverage for o in outcomes if o.coverage is not None)
    missed = report.missed()
    assert [item for group, item in missed if group == "rpcs"] == []
    assert [item for group, item in missed if group == "transitions"] == []
    assert [item for group, item in missed if group == "conditions"] == []
    assert [item for group, item in missed if group == "phases"] == []
    assert report.unexpected() == []


# ---------------------------------------------------------------------------- what counting costs


def test_counting_costs_under_5_percent_of_the_engine_benchmark() -> None:
    """Issue 16: counting costs under 5% on the engine benchmark. The benchmark's lifecycle
    (benchmarks/engine_scale.py: create, RUNNING, stop, STOPPED; 100 users, 50 repositories) for
    2,000 workspaces, then the counter fed every one of its status changes as the Simulator feeds
    it; both in CPU time, best of several, so a loaded machine slows both alike (measured: about
    1.8%, the end-to-end comparison `engine_scale.py --coverage` is within noise). Up to three
    rounds: on a machine loaded by other suites one round was once measured at 5.0%."""
    import time

    from simulator.core.coverage import CoverageCounter
    from simulator.core.engine import Engine
    from simulator.core.model import StatusChange
    from simulator.core.simtime import MINUTE

    def lifecycle() -> tuple[list[StatusChange], float]:
        seen: list[object] = []
        engine = Engine(seed=1, observer=seen.append)
        users = [engine.add_user(f"user{i}") for i in range(100)]
        start = time.process_time()
        created = [
            engine.create_workspace(users[i % 100], context_url=f"https://github.com/org/r{i % 50}")
            for i in range(2000)
        ]
        engine.advance_to(engine.now + 5 * MINUTE)
        for ws in created:
            engine.stop_workspace(engine.users[ws.owner_id], ws.id)
        engine.advance_to(engine.now + 5 * MINUTE)
        cpu = time.process_time() - start
        return [e for e in seen if isinstance(e, StatusChange)], cpu

    def counting(changes: list[StatusChange]) -> float:
        feed = CoverageCounter().status_change
        start = time.process_time()
        for change in changes:
            feed(change)
        return time.process_time() - start

    ratios = []
    for _ in range(3):  # a round that another process's burst slowed is measured again
        runs = [lifecycle() for _ in range(3)]
        changes = runs[0][0]
        assert len(changes) == 2000 * 8  # start, 4 steps, stop mark, STOPPING, STOPPED
        engine_cpu = min(cpu for _, cpu in runs)
        counting_cpu = min(counting(changes) for _ in range(5))
        ratios.append(counting_cpu / engine_cpu)
        if ratios[-1] < 0.05:
            break
    assert min(ratios) < 0.05, ratios
