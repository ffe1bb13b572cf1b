"""The environment a user has: gitpod-sim's wheel installed in a fresh venv outside the checkout.

The wheel is built from this checkout (``pip wheel``), then the README's own install line runs
in a temporary folder with the checkout's ``.`` replaced by the wheel's path, so the venv holds
exactly what a user's ``pip install '.[contract]'`` brings (dependencies from the package index,
through pip's cache). It is built once per source tree and shared by the xdist workers under a
file lock (cost: about 30-60 s on 2 cores when the sources changed, nothing when they did not).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
INSTALL_DIRECTIVE = "<!-- test: install -->"
STALE = 3 * 3600


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gitpod-sim-tests"


def source_key() -> str:
    """A digest of everything that goes into the wheel and its install."""
    digest = hashlib.sha256(install_line().encode())  # not all of the README: only this matters
    files = [ROOT / "pyproject.toml", ROOT / "setup.py"]
    files += sorted(p for p in (ROOT / "simulator").rglob("*") if "__pycache__" not in p.parts)
    files += sorted((ROOT / "scenarios").glob("*.toml"))
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def install_line() -> str:
    """The README's install command (the shell block after ``<!-- test: install -->``)."""
    text = README.read_text()
    match = re.search(re.escape(INSTALL_DIRECTIVE) + r"\n```sh\n(.*?)\n```", text, flags=re.S)
    assert match, f"README has no {INSTALL_DIRECTIVE} block"
    line = match.group(1).splitlines()[0]
    assert "'.[contract]'" in line, line
    return line


def user_venv() -> Path:
    """The venv folder (``.../.venv``) of a user's install of this checkout."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    home = root / f"user-{source_key()}"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / "ok").exists():
            os.utime(home / "ok")  # in use: another tree's run must not delete it
            return home / ".venv"
        for old in root.glob("user-*"):
            # the cache does not grow: a build goes when no run used it for STALE seconds (not
            # at once: several checkouts of one machine may be testing at the same time)
            used = old / "ok"
            if not used.exists() or time.time() - used.stat().st_mtime > STALE:
                shutil.rmtree(old, ignore_errors=True)
        dist = home / "dist"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(dist),
                str(ROOT),
            ]
        )
        (wheel,) = dist.glob("gitpod_sim-*.whl")
        line = install_line().replace("'.[contract]'", f"'{wheel}[contract]'")
        _run(["bash", "-c", line], cwd=home)
        (home / "ok").write_text(line)
    return home / ".venv"


def user_env(venv: Path) -> dict[str, str]:
    """os.environ as a user's shell with the venv activated (no PYTHONPATH into the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
