"""The client's retries and reconnects, proven against gitpod-sim: answers lost after the work
was done (connection drops, errors), broken streams, a manual clock the test drives once the
client listens, and autojump for a whole lifecycle. Nothing here sleeps to wait for the
simulator: the control plane's WaitFor and the journal say what happened."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from gitpod_tool import GitpodError

REPO = "https://github.com/gitpod-io/gitpod"


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run a blocking client call while the test steers the simulator."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def done(thread: threading.Thread, out: list[Any]) -> Any:
    thread.join(30)
    assert not thread.is_alive(), "the client call did not end"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_start_once_although_the_connection_dropped_after_the_work(client, gitpod_control):
    gitpod_control.fault("connection-drop", method="CreateAndStartWorkspace", after_effect=True)
    workspace_id = client.start(REPO)
    assert client.ls() == [workspace_id]  # one workspace: the retry replayed the first answer
    calls = gitpod_control.rpcs("CreateAndStartWorkspace")
    assert [(c.code, c.message) for c in calls] == [
        ("UNAVAILABLE", "connection dropped (TCP connection closed) after the call ran"),
        ("OK", ""),
    ]
    assert calls[0].idempotency_token == calls[1].idempotency_token != ""
    assert client.reconnects == 1


def test_a_goaway_before_the_call_is_retried(client, gitpod_control):
    gitpod_control.fault("connection-drop", method="CreateAndStartWorkspace", goaway=True)
    workspace_id = client.start(REPO)
    assert client.ls() == [workspace_id]
    codes = [c.code for c in gitpod_control.rpcs("CreateAndStartWorkspace")]
    assert codes == ["UNAVAILABLE", "OK"]


def test_the_second_page_fails_once_and_the_listing_is_whole(client, gitpod_control):
    ids = [client.start(f"{REPO}-{n}") for n in range(3)]
    gitpod_control.fault("rpc-error", method="ListWorkspaces", code="UNAVAILABLE", skip=1)
    assert sorted(client.ls()) == sorted(ids)
    codes = [c.code for c in gitpod_control.rpcs("ListWorkspaces")]
    assert codes == ["OK", "UNAVAILABLE", "OK"]


def test_gives_up_after_its_retries_with_the_status(client, gitpod_control):
    gitpod_control.fault(
        "rpc-error", method="CreateAndStartWorkspace", code="UNAVAILABLE", count=0
    )
    with pytest.raises(GitpodError) as info:
        client.start(REPO)
    assert str(info.value) == "CreateAndStartWorkspace: UNAVAILABLE: injected fault: UNAVAILABLE"
    assert len(gitpod_control.rpcs("CreateAndStartWorkspace")) == client.retries + 1


def test_errors_that_are_not_transient_are_not_retried(client, gitpod_control):
    gitpod_control.fault("rpc-error", method="StopWorkspace", code="PERMISSION_DENIED")
    with pytest.raises(GitpodError) as info:
        client.stop(client.start(REPO))
    assert info.value.code.name == "PERMISSION_DENIED"
    assert len(gitpod_control.rpcs("StopWorkspace")) == 1


def test_manual_clock_the_test_advances_once_the_client_listens(client, gitpod_control):
    """The client waits for RUNNING; the test waits until it listens, then moves time."""
    workspace_id = client.start(REPO)
    thread, out = in_thread(lambda: client.wait_running(workspace_id))
    seen = gitpod_control.wait_for(workspace_id=workspace_id, listeners=1)
    assert seen.listeners == 1
    gitpod_control.advance("10m")  # IMAGEBUILD ... RUNNING
    done(thread, out)
    assert gitpod_control.wait_for(workspace_id=workspace_id, phase="RUNNING").phase == 5


def test_a_broken_listen_stream_is_opened_again(client, gitpod_control):
    gitpod_control.fault("stream-end", method="ListenToWorkspaceInstance", after_messages=1)
    workspace_id = client.start(REPO)
    thread, out = in_thread(lambda: client.wait_running(workspace_id))
    gitpod_control.wait_for(workspace_id=workspace_id, listeners=1)
    gitpod_control.advance()  # the next change: the faulty stream ends instead of sending it
    gitpod_control.wait_for(workspace_id=workspace_id, listeners=1)  # the client is back
    gitpod_control.advance("10m")
    done(thread, out)
    listens = [c.code for c in gitpod_control.rpcs("ListenToWorkspaceInstance")]
    assert listens == ["UNAVAILABLE", "CANCELLED"]  # the second one the client closed at RUNNING
    assert client.reconnects == 1


@pytest.mark.gitpod_sim(clock="autojump")
def test_a_whole_lifecycle_on_autojump(client, gitpod_control):
    """Time moves while the client waits on a stream; its stop wins over the inactivity timeout
    (the grace period autojump keeps before a timeout)."""
    gitpod_control.fault("connection-drop", method="StopWorkspace", after_effect=True, goaway=True)
    workspace_id = client.start(REPO)
    client.wait_running(workspace_id)
    client.stop(workspace_id)
    stops = gitpod_control.rpcs("StopWorkspace")
    assert [c.code for c in stops] == ["UNAVAILABLE", "OK"]
    assert stops[0].idempotency_token == stops[1].idempotency_token
    causes = [e.transition.cause for e in gitpod_control.journal().entries if e.transition]
    assert not [c for c in causes if c.startswith("timeout:")], causes
