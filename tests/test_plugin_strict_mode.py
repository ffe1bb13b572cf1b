"""The pytest plugin in a project that configures nothing: pytest-asyncio in its default strict
mode, no ``asyncio_mode``, no ini at all. Async tests that use the plugin's fixtures or marker
run; an async test that uses neither is left to pytest-asyncio's rules (pytest fails it: no async
plugin claimed it)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_async_tests_run_without_asyncio_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from simulator import Phase
        from simulator._proto.gitpod import v1 as pb

        async def test_fixture_only(gitpod, gitpod_client):
            ws = await gitpod_client.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/r"))
            inst = (await gitpod_client.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.workspace_id))).instance
            assert await gitpod.wait_for_phase(inst.instance_id, Phase.RUNNING) is Phase.RUNNING

        @pytest.mark.gitpod_sim(seed=3)
        async def test_marker_only():
            pass

        class TestInAClass:
            async def test_method(self, gitpod_sim):
                assert gitpod_sim.seed == 0

        async def test_unrelated():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "default")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 3, result.stdout.str()
    assert outcomes.get("failed") == 1 and "errors" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(["*FAILED*::test_unrelated*"])
    assert "mode=Mode.STRICT" in result.stdout.str()
