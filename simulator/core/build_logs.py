"""Image build log text, generated from the seeded source so the same seed writes the same lines."""

from __future__ import annotations

import random

_BASES = (
    "gitpod/workspace-full:2022-05-25-08-50-33",
    "gitpod/workspace-base:2022-05-20-09-21-26",
    "gitpod/workspace-python:2022-05-31-11-03-44",
    "gitpod/workspace-node:2022-05-27-18-20-38",
)
_STEPS = (
    "RUN sudo apt-get update && sudo apt-get install -y {pkg} && sudo rm -rf /var/lib/apt/lists/*",
    "RUN pip install --no-cache-dir {pkg}",
    "RUN npm install -g {pkg}",
    "RUN brew install {pkg}",
    "ENV PATH=/home/gitpod/.{pkg}/bin:$PATH",
    "COPY --chown=gitpod:gitpod .gitpod/{pkg}.sh /home/gitpod/",
)
_PACKAGES = (
    "postgresql-14",
    "redis-server",
    "ripgrep",
    "shellcheck",
    "golangci-lint",
    "poetry",
    "pnpm",
    "terraform",
    "kubectl",
    "protobuf-compiler",
    "yarn",
    "jq",
    "httpie",
    "tmux",
)


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def build_log(rng: random.Random, repository: str, count: int) -> list[str]:
    """``count`` lines of a Docker-style build for ``repository``; the last one reports success
    (the engine writes it only when the build succeeds)."""
    steps = max(1, count - 3)
    lines = [f"Building workspace image for {repository or 'snapshot'}"]
    lines.append(f"Step 1/{steps + 1} : FROM {rng.choice(_BASES)}")
    for i in range(2, steps + 2):
        template = rng.choice(_STEPS)
        lines.append(f"Step {i}/{steps + 1} : {template.format(pkg=rng.choice(_PACKAGES))}")
        lines.append(f" ---> {_hex(rng, 12)}")
    lines.append(f"Successfully built {_hex(rng, 12)}")
    # Keep exactly ``count`` lines: the header and the success line always, steps as room allows.
    if len(lines) > count:
        lines = [*lines[: count - 1], lines[-1]]
    return lines


def failure_tail(reason: str) -> list[str]:
    """What a failed build prints last, when the caller gave no log tail of its own."""
    return [f"ERROR: {reason}", "Build failed."]
