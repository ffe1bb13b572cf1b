"""Every shell, Python and TOML block of the README runs as a user would run it, so an example that
drifts fails here.

The environment is a user's: gitpod-sim's wheel in a fresh venv outside the checkout, installed by
the README's own install line (tests/user_env.py), the venv on PATH, a new empty folder as the
working folder, and for ``buf curl`` the buf that npm ships (tests/npm_tools.py) on PATH.

How a block runs is said by an HTML comment right above it in the README (``<!-- test: KIND -->``);
a block without one is ``sh`` (shell) or ``python``:

- ``sh``: line by line with bash. A ``gitpod-sim serve ...`` line starts a server in the
  background and waits for its ``listening on`` line; the server listens on free ports, and the
  README's addresses (127.0.0.1:50051, :8080, its ``--port``) are replaced by the real ones in the
  later lines. ``<workspace id>`` and ``<instance id>`` are replaced by the last such id an earlier
  line printed, as a user copies it. A line whose comment says ``until Ctrl-C`` must print, still
  be running a second later, and exit 0 on SIGINT. Every other line must exit 0. At the end
  every server gets SIGTERM and must exit 0.
- ``install``: the first line is the install (user_env.py runs it); the rest is ``sh``.
- ``python``: run with the venv's python; ``pytest``: saved as test_example.py in an empty
  project (no pytest configuration at all) and run with the venv's pytest; ``toml``: saved as
  broken.toml and run with ``gitpod-sim scenario run``; ``go``: the Go client test's code
  (tests/test_go_client.py checks it and runs it).
- ``output``: what a command prints, shown (not a command; not run).
- ``skip: REASON``: not run here; the test is reported as skipped with the README's reason.

Cost: the user venv (about 20-40 s, once per source tree, shared with test_wheel.py), then about
1 s per command line (each is a new Python process); about 40 s in all.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from user_env import README, ROOT, user_env, user_venv

SERVE_TIMEOUT = 30.0
LINE_TIMEOUT = 120.0
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WORKSPACE_ID = re.compile(r"\b[a-z0-9]+-[a-z0-9]+-[a-z0-9]{11}\b")
PHASES = ["IMAGEBUILD", "PENDING", "CREATING", "INITIALIZING", "RUNNING"]
# The first test here may build the user venv (tests/user_env.py): up to a minute or two.
pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    kind: str
    code: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.lang}"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    fence = re.compile(
        r"(?:<!-- test: (?P<kind>[^\n]*?) -->\n)?```(?P<lang>\w+)\n(?P<code>.*?)```", re.S
    )
    for match in fence.finditer(text):
        lang = match.group("lang")
        kind = match.group("kind") or {"sh": "sh", "python": "python"}.get(lang, "")
        line = text.count("\n", 0, match.start("lang")) + 1
        blocks.append(Block(line, lang, kind, match.group("code")))
    return blocks


BLOCKS = readme_blocks()


def test_every_block_says_how_it_is_tested() -> None:
    known = ("sh", "install", "python", "pytest", "toml", "go", "output", "skip: ")
    for block in BLOCKS:
        assert block.kind.startswith(known) and block.kind != "skip: ", (
            f"{block.name}: a ```{block.lang} block needs <!-- test: KIND --> above it"
        )
    kinds = [b.kind.split(":")[0] for b in BLOCKS]
    for kind in ("install", "sh", "python", "pytest", "toml", "go", "skip"):
        assert kind in kinds, f"README has no {kind} block"


def test_readme_names_the_ci_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.strip().splitlines()[-1]
    assert command in README.read_text()


@pytest.fixture(scope="module")
def venv() -> Path:
    return user_venv()


@pytest.fixture
def user(venv: Path, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A user's shell environment (venv and buf on PATH) and an empty working folder."""
    env = user_env(venv)
    if any("buf curl" in b.code for b in BLOCKS if b.kind in ("sh", "install")):
        from npm_tools import npm_clients

        env["PATH"] = f"{npm_clients() / 'node_modules' / '.bin'}{os.pathsep}{env['PATH']}"
    home = tmp_path / "project"
    home.mkdir()
    return env, home


class _Server:
    """One README ``gitpod-sim serve`` line, on free ports."""

    def __init__(self, line: str, env: dict[str, str], cwd: Path) -> None:
        args = shlex.split(line, comments=True)
        if args and args[-1] == "&":
            args.pop()
        self.readme_port = args[args.index("--port") + 1] if "--port" in args else "50051"
        self.readme_http = args[args.index("--http-port") + 1] if "--http-port" in args else None
        if self.readme_http is not None:
            args[args.index("--http-port") + 1] = "0"
        self.proc = subprocess.Popen(
            [*args, "--port", "0"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for out in self.proc.stdout:
                self.lines.append(out.rstrip("\n"))
                if out.startswith("listening on "):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(SERVE_TIMEOUT) or not any(
            x.startswith("listening on ") for x in self.lines
        ):
            self.proc.kill()
            pytest.fail(f"{line!r} did not start: {self.lines} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def addresses(self) -> dict[str, str]:
        """README address -> real address."""
        grpc = next(x for x in self.lines if x.startswith("listening on ")).split()[-1]
        found = {f"127.0.0.1:{self.readme_port}": grpc}
        if self.readme_http is not None:
            http = next(x for x in self.lines if x.startswith("connect and grpc-web on "))
            found[f"127.0.0.1:{self.readme_http}"] = http.split("//")[-1]
        return found

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -1, "did not stop within 20 s of SIGTERM"
        return self.proc.returncode, err


def run_shell(code: str, env: dict[str, str], cwd: Path) -> list[tuple[str, str]]:
    """Run a README shell block as described above; answers (command, output) per line."""
    servers: list[_Server] = []
    addresses: dict[str, str] = {}
    printed = ""
    done: list[tuple[str, str]] = []
    try:
        for raw in code.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("gitpod-sim serve"):
                server = _Server(line, env, cwd)
                servers.append(server)
                addresses.update(server.addresses())
                done.append((line, "\n".join(server.lines)))
                continue
            for readme, real in addresses.items():
                line = line.replace(readme, real)
            for placeholder, pattern in (("<workspace id>", WORKSPACE_ID), ("<instance id>", UUID)):
                if placeholder in line:
                    ids = pattern.findall(printed)
                    assert ids, f"{raw!r}: no {placeholder} printed before it"
                    line = line.replace(placeholder, ids[-1])
            if "until Ctrl-C" in line:
                out = _run_until_interrupted(line, env, cwd)
            else:
                result = subprocess.run(
                    ["bash", "-c", line],
                    cwd=cwd,
                    env=env,
                    capture_output=True,
                    text=True,
                    errors="replace",  # a Connect stream's envelopes are binary
                    timeout=LINE_TIMEOUT,
                )
                assert result.returncode == 0, (
                    f"{raw!r} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
                )
                out = result.stdout
            printed += out
            done.append((line, out))
    finally:
        stopped = [(s, *s.stop()) for s in servers]
    for server, rc, err in stopped:
        assert rc == 0, f"server {server.proc.args} exited {rc}: {err}"
    return done


def _run_until_interrupted(line: str, env: dict[str, str], cwd: Path) -> str:
    """The command must print, still be running a second later (it follows rather than ends),
    and exit 0 on SIGINT. (SIGINT only after its first line: before that it may still be
    importing, where Ctrl-C is a traceback in any Python program.)"""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {line}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=SERVE_TIMEOUT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=20)
    out = (first[0] if first else "") + rest
    assert first and first[0], f"{line!r} printed nothing within {SERVE_TIMEOUT} s: {err}"
    assert still_running, f"{line!r} ended by itself (exit {proc.returncode}): {out}{err}"
    assert proc.returncode == 0, f"{line!r} exited {proc.returncode} on Ctrl-C: {err}"
    return out


def _blocks(*kinds: str) -> list[Block]:
    return [b for b in BLOCKS if b.kind.split(":")[0] in kinds]


@pytest.mark.parametrize("block", _blocks("sh", "install"), ids=lambda b: b.name)
def test_shell_block(block: Block, user: tuple[dict[str, str], Path]) -> None:
    env, cwd = user
    code = block.code
    if block.kind == "install":
        code = "\n".join(code.splitlines()[1:])  # the install line made the venv (user_env.py)
    done = run_shell(code, env, cwd)
    assert done, f"{block.name} ran nothing"
    _check_outputs(done)


def _check_outputs(done: list[tuple[str, str]]) -> None:
    """What some lines must print, beyond exiting 0."""
    for line, out in done:
        if line.startswith("gitpod-sim serve"):
            assert any(x.startswith("gitpod-sim ") for x in out.splitlines()), out
        if "ListenToWorkspaceInstance" in line and "buf curl" in line:
            phases = re.findall(r'"phase": "PHASE_(\w+)"', out)
            assert phases[: len(PHASES)] == PHASES and phases[-1] == "STOPPED", out
        if "ListenToWorkspaceInstance" in line and "printf" in line:
            assert "PHASE_RUNNING" in out and out.endswith("{}"), out
        if "--list-services" in line:
            assert "gitpod.v1.WorkspacesService" in out.split(), out
        if "Health/Check" in line:
            assert "SERVING" in out, out
        if line.startswith("gitpod-sim scenario run"):
            assert "PASS" in out and "FAIL" not in out, out
        if line.startswith("gitpod-sim scenario list"):
            assert len(out.splitlines()) >= 13, out
        if line.startswith("pytest "):
            assert re.search(r"\b1 passed\b", out), out


@pytest.mark.parametrize("block", _blocks("python"), ids=lambda b: b.name)
def test_python_block(block: Block, user: tuple[dict[str, str], Path]) -> None:
    env, cwd = user
    result = subprocess.run(
        ["python", "-c", block.code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == PHASES


@pytest.mark.parametrize("block", _blocks("pytest"), ids=lambda b: b.name)
def test_pytest_block_in_a_plain_project(block: Block, user: tuple[dict[str, str], Path]) -> None:
    """No pytest.ini, pyproject or conftest: pytest-asyncio stays in its default (strict) mode."""
    env, cwd = user
    (cwd / "test_example.py").write_text(block.code)
    result = subprocess.run(
        ["pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b1 passed\b", result.stdout), result.stdout


@pytest.mark.parametrize("block", _blocks("toml"), ids=lambda b: b.name)
def test_toml_block_is_a_passing_scenario(block: Block, user: tuple[dict[str, str], Path]) -> None:
    env, cwd = user
    (cwd / "broken.toml").write_text(block.code)
    result = subprocess.run(
        ["gitpod-sim", "scenario", "run", "broken.toml"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PASS image-build-failure"), result.stdout


@pytest.mark.parametrize("block", _blocks("skip"), ids=lambda b: b.name)
def test_blocks_not_run_here(block: Block) -> None:
    reason = block.kind.removeprefix("skip:").strip()
    pytest.skip(f"{block.name} is not run: {reason}")


def test_go_block_is_checked_by_the_go_client_test() -> None:
    from test_go_client import PROGRAM

    assert [b for b in BLOCKS if b.kind == "go"], "README has no Go example"
    assert "// README:begin" in PROGRAM.read_text()


def test_a_drifted_line_fails(tmp_path: Path) -> None:
    """The shell runner cannot pass a command that fails."""
    env = {**os.environ}
    with pytest.raises(AssertionError, match="exited"):
        run_shell("false", env, tmp_path)
    start = time.monotonic()
    with pytest.raises(AssertionError, match="no <instance id> printed"):
        run_shell("echo '<instance id>'", env, tmp_path)
    assert time.monotonic() - start < 10
