"""State files (issue 11): written as a database writes them, locked, and read with one-line errors.

Before: two servers sharing one --state both wrote a fixed FILE.tmp (invalid JSON in 3 of 6
rounds); a --state in a missing directory was accepted and everything was lost at shutdown
(traceback, exit 1); a non-UTF-8 or partial file gave a traceback.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from server_process import LOCAL, ServerProcess, popen

from simulator import Simulator
from simulator.core.errors import InvalidArgument
from simulator.server.state_file import StateFileError, StateLock, read_state_file

REPO = "https://github.com/gitpod-io/gitpod"


def _busy_simulator(seed: int) -> Simulator:
    sim = Simulator(seed=seed, users={"alice": f"tok-{seed}"})
    for _ in range(20):
        sim.engine.create_workspace(sim.engine.users["alice"], context_url=REPO)
    return sim


def test_concurrent_saves_never_leave_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    sims = [_busy_simulator(1), _busy_simulator(2)]
    sims[0].save_state(path)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(sim: Simulator) -> None:
        try:
            for _ in range(30):
                sim.save_state(path)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        while not done.is_set():
            data = json.loads(path.read_text(encoding="utf-8"))  # raises on a torn file
            assert data["seed"] in (1, 2)

    threads = [threading.Thread(target=writer, args=(sim,)) for sim in sims]
    check = threading.Thread(target=reader)
    check.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    check.join(timeout=60)
    assert not errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp file left
    Simulator().load_state(path)


def test_a_lock_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with StateLock(path), pytest.raises(StateFileError, match="in use by another gitpod-sim"):
        StateLock(path).acquire()
    with StateLock(path):  # released: free again
        pass


CORRUPT: dict[str, tuple[bytes, str]] = {
    "not UTF-8": (b'{"format": "\xff\xfe"}', "is not UTF-8 text (byte 12: b'\\xff')"),
    "not JSON": (b'{"format": ', "is not JSON: Expecting value at line 1 column 12"),
    "truncated": (b'{"format": "gitpod-sim-state", "version": 1, "see', "is not JSON"),
    "a list": (b"[1, 2]", "is not a gitpod-sim state: expected a JSON object"),
    "another format": (b'{"format": "other"}', "not a gitpod-sim-state document"),
    "nested too deeply": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_a_corrupt_file_is_a_one_line_error_and_stays_untouched(tmp_path: Path, name: str) -> None:
    path = tmp_path / "state.json"
    content, message = CORRUPT[name]
    path.write_bytes(content)
    sim = Simulator(seed=4, users={"alice": "tok-a"})
    before = json.dumps(sim.export_state())
    with pytest.raises(InvalidArgument) as info:
        sim.load_state(path)
    assert message in info.value.message
    assert "\n" not in info.value.message
    assert json.dumps(sim.export_state()) == before
    assert path.read_bytes() == content


def test_a_partial_state_is_refused_whole(tmp_path: Path) -> None:
    sim = _busy_simulator(3)
    data = sim.export_state()
    del data["plans"]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidArgument) as info:
        Simulator().load_state(path)
    assert info.value.message.startswith("$: missing 'plans'")
    assert read_state_file(path) == data


# ---------------------------------------------------------------------- at start (processes)


def _start_fails(*args: str) -> tuple[int, str, str]:
    proc = popen("serve", *LOCAL, *args)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
        pytest.fail(f"the server started: {out!r}")
    return proc.returncode, out, err


def test_bad_state_files_are_refused_at_start(tmp_path: Path) -> None:
    """A missing directory, a locked file and each corrupt file: exit 2, one line, untouched."""
    procs: dict[str, subprocess.Popen[str]] = {}
    procs["missing directory"] = popen(
        "serve", *LOCAL, "--state", str(tmp_path / "nowhere" / "state.json")
    )
    for name in ("not UTF-8", "not JSON", "a list", "another format"):
        path = tmp_path / f"{name.replace(' ', '-')}.json"
        path.write_bytes(CORRUPT[name][0])
        procs[name] = popen("serve", *LOCAL, "--state", str(path))
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
        results[name] = (proc.returncode, out, err)
    for name, (rc, out, err) in results.items():
        assert rc == 2, (name, rc, out, err)
        assert "listening on" not in out, name
        assert "Traceback" not in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert err.startswith("error: "), (name, err)
    assert "does not exist" in results["missing directory"][2]
    for name in ("not UTF-8", "not JSON", "a list", "another format"):
        path = tmp_path / f"{name.replace(' ', '-')}.json"
        assert path.read_bytes() == CORRUPT[name][0]


def test_a_second_server_refuses_a_state_file_in_use(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    first = ServerProcess("--clock", "manual", "--state", str(path), "--user", "a=ta")
    try:
        rc, out, err = _start_fails("--clock", "manual", "--state", str(path))
        assert rc == 2, (rc, out, err)
        assert "is in use by another gitpod-sim" in err, err
        assert "Traceback" not in err
        assert first.stop(signal.SIGTERM) == 0, first.stderr()
    finally:
        first.close()
    data = read_state_file(path)
    assert [u["id"] for u in data["users"]] == ["a"]
    # once the first has gone, the file is free again
    second = ServerProcess("--clock", "manual", "--state", str(path))
    try:
        assert second.stop(signal.SIGTERM) == 0, second.stderr()
    finally:
        second.close()


def test_state_interval_saves_while_running(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    server = ServerProcess(
        "--clock", "manual", "--state", str(path), "--state-interval", "100ms", "--user", "a=ta"
    )
    try:
        deadline = time.monotonic() + 20  # bounded: a periodic save is wall-clock by nature
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists(), server.stderr()
        assert [u["id"] for u in read_state_file(path)["users"]] == ["a"]
        server.kill()  # SIGKILL: what was saved periodically stays
    finally:
        server.close()
    assert read_state_file(path)["format"] == "gitpod-sim-state"


def test_state_interval_needs_a_state_file() -> None:
    rc, _, err = _start_fails("--state-interval", "1s")
    assert rc == 2
    assert "--state-interval" in err


# ---------------------------------------------------------------------- versions

OLD = Path(__file__).parent / "state_files" / "v1-before-fault-registry.json"
"""Written by gitpod-sim at 05bc261, before the fault registry (version 1: a list of faults,
``fail-phase`` + phase, the fault stream among ``rngs``): alice's workspace in IMAGEBUILD with a
fail-phase CREATING and a stall-phase INITIALIZING fault bound to it, a 50% rpc-error pending."""
OLD_RUN = [
    ["215b9d54-e151-475b-b6f7-fa4afe6e293e", "PENDING", "step", 108399274229760],
    ["215b9d54-e151-475b-b6f7-fa4afe6e293e", "CREATING", "step", 108399274360832],
    ["215b9d54-e151-475b-b6f7-fa4afe6e293e", "CREATING", "failed", 108399275016192],
    ["215b9d54-e151-475b-b6f7-fa4afe6e293e", "STOPPED", "failed", 108399275016193],
    ["black-eagle-ykp1yku17xv"],
    ["c1925e0f-8677-4677-a800-4d697d58459c", "PENDING", "step", 108399278948352],
    ["c1925e0f-8677-4677-a800-4d697d58459c", "CREATING", "step", 108399279079424],
    ["c1925e0f-8677-4677-a800-4d697d58459c", "INITIALIZING", "step", 108399279734784],
    ["c1925e0f-8677-4677-a800-4d697d58459c", "INITIALIZING", "timeout:startup", 108399515009024],
    ["c1925e0f-8677-4677-a800-4d697d58459c", "STOPPING", "timeout:startup", 108399515009025],
    ["c1925e0f-8677-4677-a800-4d697d58459c", "STOPPED", "step", 108399515336704],
]
"""What that version answered after loading the file: run until idle, bob creates a workspace,
run until idle again (transitions: instance, phase, cause, status version; measured at 05bc261)."""


def _play(sim: Simulator) -> list[list[object]]:
    def changes(cs: list[Any]) -> list[list[object]]:
        return [[c.instance_id, c.status.phase.name, c.cause, c.status.version] for c in cs]

    out = changes(sim.run_until_idle("2h"))
    ws = sim.engine.create_workspace(sim.engine.users["bob"], context_url="https://github.com/c/d")
    out.append([ws.id])
    return out + changes(sim.run_until_idle("2h"))


def test_a_file_from_before_the_fault_registry_loads_and_answers_as_it_did() -> None:
    text = OLD.read_text(encoding="utf-8")
    assert json.loads(text)["version"] == 1
    sim = Simulator(seed=99)
    sim.load_state(OLD)
    kinds = [(f.kind.name, f.times_applied) for f in sim.faults()]
    assert kinds == [("fail-creating", 1), ("stall-phase", 1), ("rpc-error", 0)]
    run = _play(sim)
    assert run[:8] == OLD_RUN[:8]  # the saved instance, the seeded ids, the new one's steps
    # bob's new workspace lives by today's rules: since version 2 the startup limit counts from
    # PENDING, not CREATING, so its timeout comes earlier than it did then
    assert [r[:3] for r in run[8:]] == [r[:3] for r in OLD_RUN[8:]]
    assert run[8][3] < OLD_RUN[8][3]  # type: ignore[operator]
    assert OLD.read_text(encoding="utf-8") == text  # read, never rewritten
    assert sim.export_state()["version"] == 2  # saved again in today's shape


def test_a_version_1_file_in_todays_shape_still_loads() -> None:
    """Written between the fault registry and version 2."""
    sim = _busy_simulator(5)
    data = sim.export_state()
    again = Simulator()
    again.import_state({**data, "version": 1})
    assert again.export_state() == data


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (3, "$.version: state version 3 is not one this gitpod-sim reads (1, 2); it was written"
            " by a newer gitpod-sim"),
        (0, "$.version: state version 0 is not one this gitpod-sim reads (1, 2)"),
        ("2", "$.version: state version '2' is not one this gitpod-sim reads (1, 2)"),
        (None, "$.version: state version None is not one this gitpod-sim reads (1, 2)"),
    ],
)  # fmt: skip
def test_another_version_is_a_one_line_error(version: object, message: str) -> None:
    sim = _busy_simulator(6)
    data = sim.export_state()
    before = json.dumps(data)
    with pytest.raises(InvalidArgument) as info:
        Simulator().import_state({**data, "version": version})
    assert info.value.message == message
    assert json.dumps(data) == before


def test_serve_refuses_a_newer_state_file_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    data = {**_busy_simulator(7).export_state(), "version": 3}
    path.write_text(json.dumps(data), encoding="utf-8")
    content = path.read_bytes()
    rc, _, err = _start_fails("--clock", "manual", "--state", str(path))
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (rc, err)
    assert "state version 3 is not one this gitpod-sim reads" in err
    assert path.read_bytes() == content


def test_an_instance_url_of_another_shape_is_refused_by_its_path() -> None:
    """A status keeps the URL's parts (workspace id, cluster), so a URL that is not an instance
    URL cannot be imported: the check names it, and nothing is built."""
    sim = _busy_simulator(7)
    data = sim.export_state()
    url = data["instances"][0]["status"]["url"]
    assert re.fullmatch(r"https://[0-9a-z-]+\.ws-[0-9a-z-]+\.gitpod\.io", url)
    data["instances"][0]["status"]["url"] = "https://example.com/ws"
    with pytest.raises(InvalidArgument) as info:
        Simulator().import_state(data)
    assert info.value.message == (
        "$.instances[0].status.url: 'https://example.com/ws' is not an instance URL"
        " (https://<workspace id>.ws-<cluster>.gitpod.io)"
    )
    ws = data["instances"][0]["workspace_id"]
    data["instances"][0]["status"]["url"] = url.replace(ws, "other-workspace-00000000000")
    with pytest.raises(InvalidArgument) as info:
        Simulator().import_state(data)
    assert info.value.message == f"$.instances[0].status.url: not a URL of workspace {ws!r}"
