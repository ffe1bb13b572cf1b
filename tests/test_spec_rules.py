"""Every [chosen] rule of the behaviour spec has its counterpart in the README.

BEHAVIOUR.md says: "Every [chosen] rule must be written in the project's docs as the simulator's
documented behaviour." The spec lives beside the checkout (``../shared/spec/BEHAVIOUR.md`` from the
project root, as CI has it); a worktree one level deeper finds it beside a parent folder, and
``GITPOD_SIM_SPEC`` may name the file. Where it is absent the tests skip and say so.

The spec is cut into rules: a rule starts at a ``[chosen]`` mark and runs to the next mark or to
the end of its list item; a ``[chosen, ...]:`` mark that ends its paragraph covers each item of the
list after it. Each rule is known here by its first words (:data:`COUNTERPARTS`), with the
phrases that say it in the README's section "Behaviour the simulator documents as its own". A rule
the table does not know (a new or reworded rule), an entry no rule matches, or a phrase missing
from the README fails, with the rule's text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Behaviour the simulator documents as its own"
KEY_WORDS = 6
MARK = re.compile(r"(\*\*)?\[(real|chosen)(?:, [^\]]*)?\](\*\*)?(:?)")

COUNTERPARTS: dict[str, tuple[str, ...]] = {
    # Callers and authentication
    "accept bearer token and a bare": (
        "`Bearer <token>` or a bare `<token>`",
        "unknown: UNAUTHENTICATED",
    ),
    "every workspace belongs to one user": (
        "Every workspace belongs to one user",
        "NOT_FOUND for them unless it is shared (admission EVERYONE)",
        "owner tokens, StartWorkspace and StopWorkspace answer PERMISSION_DENIED",
    ),
    # Identifiers and formats
    "every id token and generated text": (
        "comes from the seed",
        "starts at 2022-06-01T00:00:00Z unless told otherwise",
        "byte-identical answers, timestamps included",
    ),
    "a syntactically invalid id is invalid": (
        "A syntactically invalid id is INVALID_ARGUMENT; a well-formed unknown one is NOT_FOUND",
    ),
    # Context URLs
    "a context snapshot id names a": (
        "A context `snapshot/<id>` names a snapshot: any id is accepted and the workspace answers"
        " `context.snapshot`",
        "An unparseable context is INVALID_ARGUMENT",
    ),
    "the simulator fills git normalized context": (
        "`context.git.normalized_context_url` is the normalised URL",
        "deterministic 40-hex sha",
        "answers `context.prebuild`",
    ),
    # Lifecycle of an instance
    "a new instance starts at the": (
        "A start makes a new instance at once, directly in IMAGEBUILD",
        "PHASE_UNSPECIFIED is never reported",
    ),
    "an image build is needed on": (
        "The image is cached when a build succeeds",
        "two starts racing before the first build ends both build",
        "Build log lines come from the seed",
    ),
    "a workspace never marked active counts": ("counted from RUNNING when never marked active",),
    "it goes to stopped with conditions": (
        "An instance still in IMAGEBUILD 1 h after its creation goes to STOPPED",
        '`conditions.timeout = "workspace timed out after image build (01h00m) took longer than'
        ' 01h00m"`',
    ),
    "when a second timeout fires later": (
        "When a second timeout fires later",
        "`conditions.timeout` keeps the first text",
    ),
    "message workspace is temporarily unavailable set": (
        '`message = "workspace is temporarily unavailable"`, and leaving INTERRUPTED clears it,'
        " whichever way it leaves",
    ),
    "the mark is a status change": (
        "its own status change in the current phase (same phase, new `status_version`)",
        "then the phase changes at the same simulated instant",
        "STOPPED after the STOPPING duration",
        "a stop during IMAGEBUILD…INITIALIZING does the same",
        "a stop of a STOPPING instance succeeds and changes nothing",
    ),
    "use the same construction on the": ("`(unix_seconds << 16)` of the simulated clock",),
    "phase durations are configurable per phase": (
        "IMAGEBUILD 60 s, PENDING 2 s, CREATING 10 s, INITIALIZING 15 s, STOPPING 5 s",
        "configurable per phase as fixed, uniform or log-normal",
    ),
    # The RPCs
    "real paging next page token is": (
        "Paging is real",
        "`next_page_token` is opaque and empty on the last page",
        "never repeats an item",
        "a token this server did not issue",
        "`field_mask` paths are relative to the item",
        "an unknown path is INVALID_ARGUMENT",
    ),
    "never started failed precondition": (
        "GetOwnerToken of a workspace never started is FAILED_PRECONDITION",
    ),
    "the api has no call that": (
        "The API has no call that makes prebuilds",
        "`AddPrebuild`",
        "`[[prebuilds]]`",
        "skips IMAGEBUILD",
    ),
    "first the current status then every": (
        "ListenToWorkspaceInstance sends the current status, then every change in"
        " `status_version` order, and ends right after STOPPED",
        "an unknown instance is NOT_FOUND",
        "Many listeners may follow one instance",
        "a listener that disconnects leaves nothing behind",
    ),
    "a listener that joins mid build": (
        "ListenToImageBuildLogs sends the lines so far, then follows the build",
        "a finished, failed or abandoned build replays its lines and ends",
        "no build: ends at once",
    ),
    "the stream sends one message per": (
        "one empty message per phase change after the request",
        "two from a running instance, one if it was already STOPPING",
        "A STOPPING instance counts as active",
    ),
    # Idempotency tokens
    "scoped per caller rpc empty token": (
        "scoped per caller and RPC; empty means no de-duplication",
    ),
    "same token same request the first": (
        "the first answer again",
        "StopWorkspace: no second action, the stream follows the same instance to STOPPED or ends"
        " at once",
    ),
    "same token different request invalid argument": ("with a different request INVALID_ARGUMENT",),
    "concurrent duplicates exactly one performs the": (
        "exactly one performs the action and the others get its answer",
    ),
    "a request that failed validation records": (
        "a request that failed validation records nothing",
    ),
    # The simulated clock
    "manual time moves only when a": ("manual time moves only when a caller advances it",),
    "realtime simulated time follows the wall": (
        "realtime follows the wall clock times a speed factor",
    ),
    "autojump time moves only while some": (
        "autojump moves only while some client waits on a stream and no other call is in progress",
        "jumps at once to the next lifecycle step",
        "waits a grace period of real quiet",
    ),
}
"""A [chosen] rule's first words -> the README phrases that say it (whitespace and case aside)."""


@dataclass(frozen=True)
class Rule:
    heading: str | None
    text: str

    @property
    def key(self) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", self.text.lower())[:KEY_WORDS])


def spec_path() -> Path | None:
    """BEHAVIOUR.md beside the checkout (or beside a parent folder), or ``GITPOD_SIM_SPEC``."""
    named = os.environ.get("GITPOD_SIM_SPEC")
    if named:
        path = Path(named)
        return path / "BEHAVIOUR.md" if path.is_dir() else path
    for folder in ROOT.parents:
        candidate = folder / "shared" / "spec" / "BEHAVIOUR.md"
        if candidate.is_file():
            return candidate
    return None


def _blocks(text: str) -> list[tuple[str | None, str, bool]]:
    """(heading, text, is a list item) for every paragraph and list item, lines joined; the
    heading is the last ``## `` (or deeper) one, None before the first."""
    out: list[tuple[str | None, str, bool]] = []
    heading: str | None = None
    current: list[str] = []
    item = False

    def flush() -> None:
        nonlocal current
        if current:
            out.append((heading, " ".join(current), item))
        current = []

    for line in text.splitlines():
        if line.startswith("#"):
            flush()
            heading = line.lstrip("#").strip() if line.startswith("##") else None
        elif not line.strip():
            flush()
        elif line.startswith("- "):
            flush()
            item = True
            current = [line[2:].strip()]
        elif line.startswith("    ") and not current:
            continue  # an indented code block
        else:
            if not current:
                item = False
            current.append(line.strip())
    flush()
    return out


def chosen_rules(spec: str) -> list[Rule]:
    """Every [chosen] rule of the spec, in order."""
    rules: list[Rule] = []
    covering = False  # the list items after a "[chosen ...]:" paragraph
    for heading, text, item in _blocks(spec):
        if heading is None:
            continue  # the preamble says what the marks mean; the rules come under "## " headings
        marks = [m for m in MARK.finditer(text) if not m.group(1)]  # **[chosen]** defines
        if covering and item and not marks:
            rules.append(Rule(heading, text))
            continue
        covering = False
        for i, mark in enumerate(marks):
            if mark.group(2) != "chosen":
                continue
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            body = text[mark.end() : end].strip()
            if body:
                rules.append(Rule(heading, body))
            elif mark.group(4):
                covering = True
    return rules


def readme_section(readme: str) -> str:
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    return readme[start : end if end != -1 else len(readme)]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def problems(spec: str, readme: str) -> list[str]:
    """What keeps the README from documenting every [chosen] rule of ``spec``."""
    section = _norm(readme_section(readme))
    out = []
    rules = chosen_rules(spec)
    for rule in rules:
        phrases = COUNTERPARTS.get(rule.key)
        if phrases is None:
            out.append(
                f"[chosen] rule in {rule.heading!r} has no counterpart in the README "
                f"(write it into {SECTION!r} and add {rule.key!r} to COUNTERPARTS): {rule.text}"
            )
            continue
        for phrase in phrases:
            if _norm(phrase) not in section:
                out.append(
                    f"README's {SECTION!r} does not say {phrase!r}, which the [chosen] rule in "
                    f"{rule.heading!r} needs: {rule.text}"
                )
    keys = {rule.key for rule in rules}
    for key in COUNTERPARTS:
        if key not in keys:
            out.append(f"COUNTERPARTS has {key!r}, which names no [chosen] rule of the spec")
    return out


@pytest.fixture(scope="module")
def spec() -> str:
    path = spec_path()
    if path is None or not path.is_file():
        pytest.skip(
            "BEHAVIOUR.md not found: it lives beside the checkout as ../shared/spec/ "
            "(or set GITPOD_SIM_SPEC to the file); the README's [chosen] rules are not checked"
        )
    return path.read_text()


def test_every_chosen_rule_of_the_spec_is_in_the_readme(spec: str) -> None:
    found = problems(spec, (ROOT / "README.md").read_text())
    assert not found, "\n".join(found)


def test_the_spec_is_cut_into_its_chosen_rules(spec: str) -> None:
    rules = chosen_rules(spec)
    assert len(rules) >= 29  # what BEHAVIOUR.md held when this was written
    texts = [rule.text for rule in rules]
    assert "Accept `Bearer <token>`" in texts[0]
    # the list after "[chosen, after Google AIP-155, ...]:" is one rule per item
    assert "Scoped per (caller, RPC). Empty token: no de-duplication." in texts
    # what the preamble says about the marks is no rule
    assert not any("must be written in the project's docs" in text for text in texts)


def test_a_chosen_rule_missing_from_the_readme_fails() -> None:
    """The check itself, on a small spec of its own: an unknown rule, a missing phrase."""
    spec = (
        "## Callers\n"
        "- [real] Upstream did this. [chosen] Accept `Bearer <token>` and a bare `<token>`.\n"
        "- [chosen] A brand new rule nobody wrote down.\n"
    )
    readme = f"{SECTION}\n\n`Bearer <token>` or a bare `<token>`\n\n## Next\n"
    found = problems(spec, readme)
    assert any("A brand new rule nobody wrote down." in p and "no counterpart" in p for p in found)
    assert any("unknown: UNAUTHENTICATED" in p for p in found)  # the first rule's other phrase
