"""A ``gitpod-sim serve`` subprocess for the tests that talk to a real server over TCP.

Stdout lines are collected by a reader thread so a test can wait for one with a bounded timeout;
stderr goes to a file, so nothing the server writes there can block it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0
LOCAL = ("--port", "0", "--host", "127.0.0.1")


def command(*args: str) -> list[str]:
    """``gitpod-sim ARGS`` from this venv (the console script, or ``-m simulator.cli``)."""
    script = Path(sys.executable).parent / "gitpod-sim"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "simulator.cli", *args]


def popen(*args: str, stderr: object = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=stderr,  # type: ignore[arg-type]
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class ServerProcess:
    """``gitpod-sim serve --port 0 --host 127.0.0.1 ARGS``, started and listening."""

    def __init__(self, *args: str) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
        self.proc = popen("serve", *LOCAL, *args, stderr=self._stderr)
        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self.wait_for(lambda line: line.startswith("listening on "), STARTUP_TIMEOUT)
        self.address = line.removeprefix("listening on ").strip()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[str], bool], timeout: float = 5.0) -> str:
        """The first stdout line matching ``pred``, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    self.kill()
                    why = "server exited" if self.eof else f"nothing within {timeout} s"
                    pytest.fail(f"{why}; stdout={self.lines!r} stderr={self.stderr()!r}")
                self._cond.wait(left)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code (kills and fails if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not exit within {EXIT_TIMEOUT} s of signal {sig}")
        with self._cond:
            self._cond.wait_for(lambda: self.eof, timeout=5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
