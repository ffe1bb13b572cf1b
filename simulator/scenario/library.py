"""Where scenarios are found: files in ``./scenarios`` first, then the ones gitpod-sim ships.

The shipped scenarios are the project's top-level ``scenarios/`` folder: in a wheel they are
package data at ``simulator/scenario/shipped/`` (pyproject's package-dir maps the folder there),
in an editable install or a checkout they are read where they live. A scenario is named by its
file (``10-stop-in-each-phase.toml``), its file's stem, or that stem without its number
(``stop-in-each-phase``, the scenario's own name in every shipped file).
"""

from __future__ import annotations

import re
from pathlib import Path

_NUMBERED = re.compile(r"^\d+-")


def shipped_dir() -> Path:
    """The scenarios that ship with gitpod-sim."""
    package_data = Path(__file__).resolve().parent / "shipped"
    if package_data.is_dir():
        return package_data
    return Path(__file__).resolve().parents[2] / "scenarios"  # editable install / checkout


def local_dir() -> Path:
    return Path.cwd() / "scenarios"


def available() -> list[Path]:
    """``./scenarios/*.toml``, then every shipped file whose name no local file has."""
    local = sorted(local_dir().glob("*.toml")) if local_dir().is_dir() else []
    names = {p.name for p in local}
    shipped = sorted(p for p in shipped_dir().glob("*.toml") if p.name not in names)
    return local + shipped


def _names(path: Path) -> set[str]:
    return {path.name, path.stem, _NUMBERED.sub("", path.stem)}


def resolve(name_or_file: str) -> Path:
    """A file path as given when it exists, else the first available scenario of that name."""
    given = Path(name_or_file)
    if given.is_file():
        return given
    for path in available():
        if name_or_file in _names(path):
            return path
    raise LookupError(
        f"no scenario file or name {name_or_file!r} (`gitpod-sim scenario list` shows the names)"
    )
