"""Line numbers for a TOML document, which ``tomllib`` does not keep.

Why a scanner of our own: the schema check must say *where* a mistake is, and the standard
library parser only reports lines for syntax errors. This reads the same text once more and
records the line of every table header, array-of-tables item and key (the first segment of a
dotted key), skipping multi-line strings and arrays so their contents are never taken for keys.
It only runs on text that ``tomllib`` already accepted.
"""

from __future__ import annotations

import re

_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\-]+)\s*\]\]")
_TABLE_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]")
_KEY = re.compile(r"""^\s*([A-Za-z0-9_\-]+|"[^"]*"|'[^']*')\s*[.=]""")

TableRef = tuple[str, int | None]
"""A table name and, for an array-of-tables item, its index (0-based)."""


class SourceMap:
    """Where each table, array item and key of a TOML text starts (1-based lines)."""

    def __init__(self, text: str) -> None:
        self.tables: dict[TableRef, int] = {}
        self.keys: dict[tuple[str, int | None, str], int] = {}
        self._scan(text)

    def line(self, table: str, index: int | None = None, key: str | None = None) -> int:
        """The line of ``key`` in the table (or of the table itself); 1 when unknown."""
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        return self.tables.get((table, index), 1)

    def _scan(self, text: str) -> None:
        counts: dict[str, int] = {}
        current: TableRef = ("", None)
        depth = 0  # open brackets/braces of a value spanning lines
        in_string: str | None = None  # the delimiter of an open multi-line string
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if in_string in line:
                    in_string = None
                continue
            if depth == 0:
                if m := _ARRAY_HEADER.match(line):
                    name = m.group(1)
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    current = (name, index)
                    self.tables[current] = number
                    continue
                if m := _TABLE_HEADER.match(line):
                    current = (m.group(1), None)
                    self.tables.setdefault(current, number)
                    continue
                if m := _KEY.match(line):
                    key = m.group(1).strip("\"'")
                    self.keys.setdefault((current[0], current[1], key), number)
            depth, in_string = _value_state(line, depth)


def _value_state(line: str, depth: int) -> tuple[int, str | None]:
    """Bracket depth after ``line`` and whether it leaves a multi-line string open."""
    i = 0
    while i < len(line):
        c = line[i]
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            delim = line[i : i + 3]
            end = line.find(delim, i + 3)
            if end < 0:
                return depth, delim
            i = end + 3
            continue
        if c in "\"'":
            j = i + 1
            while j < len(line) and line[j] != c:
                j += 2 if c == '"' and line[j] == "\\" else 1
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return depth, None
