"""The pytest plugin, as a user's project sees it (through pytester, in a subprocess)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(CONFTEST_INI)
    return pytester


def test_fixtures_marker_and_helpers(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from simulator import Phase
        from simulator._proto.gitpod import v1 as pb

        REPO = "https://github.com/gitpod-io/gitpod"

        async def test_lifecycle_in_memory(gitpod, gitpod_client):
            ws = await gitpod_client.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url=REPO))
            inst = (await gitpod_client.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.workspace_id))).instance
            await gitpod.wait_for_phase(inst.instance_id, Phase.RUNNING)
            assert gitpod.sim.now() - gitpod.started_at == 87_000_000  # 60+2+10+15 s
            gitpod.advance("31m")
            statuses = await gitpod.collect_listen(gitpod_client, inst.instance_id)
            assert [s.phase for s in statuses][-1] == Phase.STOPPED

        async def test_over_tcp(gitpod_tcp_client, gitpod_sim):
            await gitpod_tcp_client.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url=REPO))
            assert len(gitpod_sim.engine.workspaces) == 1

        @pytest.mark.gitpod_sim(seed=7, users={"carol": "c-tok"}, clock="autojump")
        async def test_marker(gitpod_sim, gitpod_client):
            assert gitpod_sim.seed == 7 and set(gitpod_sim.users) == {"carol"}
            assert gitpod_sim.clock.mode.value == "autojump"
            assert (await gitpod_client.list_workspaces(pb.ListWorkspacesRequest())).result == []

        def test_manual_by_default(gitpod_sim):
            assert gitpod_sim.clock.mode.value == "manual"
            assert set(gitpod_sim.users) == {"alice", "bob"}
        """
    )
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_virtual_time_guard_names_the_stuck_phase(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from simulator import Phase
        from simulator._proto.gitpod import v1 as pb

        @pytest.mark.gitpod_sim(max_time="30s")
        async def test_too_slow(gitpod, gitpod_client):
            ws = await gitpod_client.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/a/b"))
            inst = (await gitpod_client.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.workspace_id))).instance
            await gitpod.wait_for_phase(inst.instance_id, Phase.RUNNING)

        async def test_not_idle_within_budget(gitpod, gitpod_client):
            # Idle only after the 30 min inactivity timeout; the ini budget is 10 min.
            await gitpod_client.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/a/b"))
            gitpod.run_until_idle()
        """
    )
    project.makeini(CONFTEST_INI + "gitpod_sim_max_time = 10m\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*virtual-time guard: instance * still IMAGEBUILD after 0h00m30s*RUNNING*",
            "*virtual-time guard: run_until_idle (never idle)*stuck: * in *",
        ]
    )


def test_readme_example_and_isolation_under_xdist(project: pytest.Pytester) -> None:
    """The README's pytest example passes, and tests on two xdist workers share nothing."""
    pytest.importorskip("xdist")
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Testing with pytest", 1)[1]
    example = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    project.makepyfile(
        test_readme_example=example,
        test_isolated="""
        import pytest
        from simulator._proto.gitpod import v1 as pb

        @pytest.mark.parametrize("n", range(4))
        async def test_isolated(n, gitpod_tcp_client, gitpod_sim):
            for _ in range(n):
                await gitpod_tcp_client.create_and_start_workspace(
                    pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/a/b"))
            listed = await gitpod_tcp_client.list_workspaces(pb.ListWorkspacesRequest())
            assert len(listed.result) == n
        """,
    )
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=5)


COVERAGE_TESTS = """
import pytest
from simulator._proto.gitpod import v1 as pb

@pytest.mark.parametrize("n", range(4))
async def test_creates(n, gitpod, gitpod_client):
    for _ in range(n):
        await gitpod_client.create_and_start_workspace(
            pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/a/b"))
    gitpod.advance("2m")
"""


def test_coverage_of_every_simulator_merged_across_xdist_workers(project: pytest.Pytester) -> None:
    """--gitpod-coverage under -n 2: the counts of all four tests' simulators, in one file;
    --gitpod-coverage-fail-under fails a green run below the figure, and passes it above."""
    import json

    pytest.importorskip("xdist")
    project.makepyfile(test_cov=COVERAGE_TESTS)
    out = project.path / "coverage.json"
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", f"--gitpod-coverage={out}",
        "--gitpod-coverage-fail-under=90",
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    data = json.loads(out.read_text())
    counts = {(t["from"], t["to"]): t["count"] for t in data["transitions"]}
    assert counts[None, "IMAGEBUILD"] == 6  # 0 + 1 + 2 + 3 starts
    assert counts["INITIALIZING", "RUNNING"] == 6
    rpcs = {(r["method"], r["code"]): r["count"] for r in data["rpcs"]}
    assert rpcs["CreateAndStartWorkspace", "OK"] == 6
    result.stdout.fnmatch_lines(
        [
            "*gitpod-sim coverage of 4 simulator(s)*",
            "*transitions (from, to, trigger) * 5 *",
            "never exercised (*",
            f"coverage written to {out}",
            "FAIL gitpod-sim coverage: transitions *% is below the required 90%",
        ]
    )
    ok = project.runpytest_subprocess("-p", "no:cacheprovider", "--gitpod-coverage-fail-under=10")
    assert ok.ret == pytest.ExitCode.OK


SESSION_COVERAGE_TESTS = """
import datetime as dt
import pytest
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb

@pytest.mark.parametrize("n", range(4))
async def test_session_creates(n, gitpod_session):
    api = gitpod_session.client("alice")
    for _ in range(n + 1):
        await api.create_and_start_workspace(
            pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/a/b"))
    await gitpod_session.control().advance(spb.AdvanceRequest(by=dt.timedelta(minutes=2)))
"""


def test_coverage_of_every_session_merged_across_xdist_workers(project: pytest.Pytester) -> None:
    """Issue 16 on sessions: coverage is per session (each session a world of its own, read
    through its control plane before it is deleted), and --gitpod-coverage merges the sessions
    of every test and every xdist worker."""
    import json

    pytest.importorskip("xdist")
    project.makepyfile(test_session_cov=SESSION_COVERAGE_TESTS)
    out = project.path / "coverage.json"
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", f"--gitpod-coverage={out}"
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    data = json.loads(out.read_text())
    rpcs = {(r["method"], r["code"]): r["count"] for r in data["rpcs"]}
    assert rpcs["CreateAndStartWorkspace", "OK"] == 10  # 1 + 2 + 3 + 4, no more, no less
    counts = {(t["from"], t["to"]): t["count"] for t in data["transitions"]}
    assert counts[None, "IMAGEBUILD"] == 10
    result.stdout.fnmatch_lines(["*gitpod-sim coverage of 4 simulator(s)*"])
