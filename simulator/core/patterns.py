"""Context URL patterns (plan scopes, fault targets), matched in linear time by RE2.

Why RE2 (the ``google-re2`` binding, Google's own): Python's ``re`` backtracks, so one pattern
such as ``(a+)+$`` froze the whole server for 16.7 s against a 29-character URL, and every extra
character doubled it. RE2 guarantees time linear in the input and refuses what it cannot do in
linear time (backreferences, lookaround), so a pattern either compiles and matches in microseconds
or is refused at once with RE2's reason. Patterns are cached: a start matches the same few
patterns again and again. RE2 (a C++ library) loads with the first pattern compiled, not with the
core: most worlds never compile one, and start-up time is measured.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Protocol

from simulator.core import limits
from simulator.core.errors import InvalidArgument

if TYPE_CHECKING:
    import re2


@cache
def _options() -> re2.Options:
    import re2

    options = re2.Options()
    options.log_errors = False  # the reason goes to the caller, not to the server's stderr
    return options


class Pattern(Protocol):
    """What the engine needs from a compiled pattern."""

    @property
    def pattern(self) -> str: ...

    def search(self, text: str) -> object | None: ...


def compile_pattern(pattern: str, field: str = "context pattern") -> Pattern:
    """A context URL pattern in RE2 syntax; malformed, too long or not linear-time (a
    backreference, a lookaround) is INVALID_ARGUMENT with the reason."""
    if not pattern:
        raise InvalidArgument(f"{field} must not be empty")
    limits.text(field, pattern, maximum=limits.MAX_PATTERN)
    return _compile(pattern, field)


@lru_cache(maxsize=1024)
def _compile(pattern: str, field: str) -> Pattern:
    import re2

    try:
        compiled: Pattern = re2.compile(pattern, options=_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidArgument(
            f"malformed {field} {pattern!r}: {reason} (patterns use RE2 syntax: no"
            " backreferences or lookaround)"
        ) from None
    return compiled
