"""Parsing and normalisation of Gitpod context URLs.

A context URL says what a workspace is started from: a git repository (optionally a branch, commit,
pull request or issue in it) or a snapshot. Upstream Gitpod strips a few "prefix" forms first
(``prebuild/``, ``imagebuild/``, ``referrer:<ide>/``, ``KEY=VAL/``) and then hands the rest to a
host-specific parser. The simulator has no hosts to ask, so it parses every host the GitHub way and
turns the result into one normalised ``https://host/owner/repo[/...]`` URL. Everything here is a
pure function of its input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

__all__ = ["ContextParseError", "ParsedContext", "parse_context_url", "strip_credentials"]

ContextKind = Literal["git", "snapshot"]
RefKind = Literal["head", "branch", "tag", "commit", "pull", "issue"]

_ERROR_PREFIX = "context parse error: "

# Prefixes upstream strips before parsing. They may repeat and come in any order.
_FIXED_PREFIXES = ("prebuild/", "imagebuild/")
_REFERRER_PREFIX_RE = re.compile(r"referrer:[^/]+/")
# One or more comma-separated KEY=VAL pairs, then '/'. Keys look like environment variable names,
# which keeps a URL's first segment (``https:``, ``github.com``, ``git@host:owner``) from matching.
_ENV_PAIR = r"[A-Za-z_][A-Za-z0-9_]*=[^/,=]*"
_ENV_PREFIX_RE = re.compile(rf"{_ENV_PAIR}(?:,{_ENV_PAIR})*/")

_SNAPSHOT_PREFIX = "snapshot/"
_SCP_LIKE_RE = re.compile(r"git@(?P<host>[^/:@]+):(?P<path>.*)", re.DOTALL)
_SCHEME_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_ALLOWED_SCHEMES = frozenset({"http", "https"})
_HOST_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST_RE = re.compile(rf"(?P<name>{_HOST_LABEL}(?:\.{_HOST_LABEL})*)(?::(?P<port>[0-9]{{1,5}}))?")
_SHA_RE = re.compile(r"[0-9a-fA-F]{40}")
_NUMBER_RE = re.compile(r"[0-9]+")


class ContextParseError(ValueError):
    """A context URL that cannot be parsed; the API answers it with INVALID_ARGUMENT.

    The message reads ``context parse error: <why>: <input>`` so it can go to the caller as is;
    ``reason`` and ``context_url`` keep the two parts apart for callers that want them.
    """

    def __init__(self, reason: str, context_url: str) -> None:
        self.reason = reason
        self.context_url = context_url
        message = f"{_ERROR_PREFIX}{reason}" + (f": {context_url}" if context_url else "")
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ParsedContext:
    """What a context URL names, in normalised form.

    Frozen so one parse can be shared between a workspace, its instances and the image cache.
    """

    original: str
    """The context URL exactly as given, after ``strip()``: upstream echoes it back unchanged."""
    kind: ContextKind
    normalized_url: str
    """``https://host/owner/repo`` plus ``/tree/<ref>``, ``/releases/tag/<tag>``,
    ``/commit/<sha>``, ``/pull/<n>`` or ``/issues/<n>``; empty for snapshots."""
    host: str
    owner: str
    repo: str
    ref_kind: RefKind
    ref: str
    snapshot_id: str

    @property
    def repository(self) -> str:
        """``host/owner/repo`` lower-cased: one key per repository for the image cache."""
        if self.kind == "snapshot":
            return ""
        return f"{self.host}/{self.owner}/{self.repo}".lower()

    @property
    def description(self) -> str:
        """Short human text for the workspace's description, as the dashboard would show it."""
        if self.kind == "snapshot":
            return f"snapshot {self.snapshot_id}"
        base = f"{self.owner}/{self.repo}"
        match self.ref_kind:
            case "branch" | "tag":
                return f"{base} - {self.ref}"
            case "commit":
                return f"{base} - commit {self.ref[:7]}"
            case "pull":
                return f"{base} - PR #{self.ref}"
            case "issue":
                return f"{base} - issue #{self.ref}"
            case _:
                return base


_CREDENTIALS_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")
"""User info after a scheme (``https://user:password@``, ``https://token@``): credentials."""


def strip_credentials(text: str) -> str:
    """``text`` with the user info of every URL in it taken out."""
    return _CREDENTIALS_RE.sub(r"\g<scheme>", text) if "@" in text else text


@lru_cache(maxsize=4096)
def parse_context_url(raw: str) -> ParsedContext:
    """Parse and normalise a context URL, or raise :class:`ContextParseError` saying why not."""
    original = strip_credentials(raw.strip())  # never stored or echoed
    if not original:
        raise ContextParseError("empty context URL", "")
    if any(ch.isspace() for ch in original):
        raise ContextParseError("whitespace inside context URL", original)
    control = next((ch for ch in original if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0), None)
    if control is not None:
        # NUL, DEL and friends: no real URL holds them, and they corrupt logs and terminals.
        raise ContextParseError(
            f"control character U+{ord(control):04X} inside context URL",
            original.encode("unicode_escape").decode("ascii"),
        )

    rest = _strip_prefixes(original)
    if not rest:
        raise ContextParseError("nothing left after prefixes", original)
    if rest.startswith(_SNAPSHOT_PREFIX):
        return _parse_snapshot(original, rest[len(_SNAPSHOT_PREFIX) :])
    return _parse_git(original, rest)


def _strip_prefixes(text: str) -> str:
    """Remove upstream's prefix forms until none is left; they carry nothing the simulator uses."""
    while True:
        for fixed in _FIXED_PREFIXES:
            if text.startswith(fixed):
                text = text[len(fixed) :]
                break
        else:
            match = _REFERRER_PREFIX_RE.match(text) or _ENV_PREFIX_RE.match(text)
            if match is None:
                return text
            text = text[match.end() :]


def _parse_snapshot(original: str, snapshot_id: str) -> ParsedContext:
    """A ``snapshot/<id>`` context: any non-empty single-segment id is accepted."""
    if not snapshot_id:
        raise ContextParseError("empty snapshot id", original)
    if "/" in snapshot_id:
        raise ContextParseError("snapshot id must not contain '/'", original)
    return ParsedContext(
        original=original,
        kind="snapshot",
        normalized_url="",
        host="",
        owner="",
        repo="",
        ref_kind="head",
        ref="",
        snapshot_id=snapshot_id,
    )


def _parse_git(original: str, text: str) -> ParsedContext:
    """A repository URL in any of the accepted spellings, normalised to ``https://``."""
    scp = _SCP_LIKE_RE.fullmatch(text)
    if scp is not None:
        text = f"{scp['host']}/{scp['path']}"
    else:
        scheme = _SCHEME_RE.match(text)
        if scheme is not None:
            if scheme["scheme"].lower() not in _ALLOWED_SCHEMES:
                raise ContextParseError(f"unknown scheme '{scheme['scheme']}'", original)
            text = text[scheme.end() :]

    # Query strings and fragments select nothing the simulator knows about.
    for sep in ("?", "#"):
        text = text.split(sep, 1)[0]

    authority, _, path = text.partition("/")
    host = _parse_host(original, authority)

    path = path.rstrip("/")
    segments = path.split("/") if path else []
    if len(segments) < 2:
        raise ContextParseError("expected owner and repository in the path", original)
    owner, repo, *extra = segments
    repo = repo.removesuffix(".git")
    if not owner:
        raise ContextParseError("empty owner", original)
    if not repo:
        raise ContextParseError("empty repository name", original)

    ref_kind, ref, suffix = _parse_selector(original, extra)
    return ParsedContext(
        original=original,
        kind="git",
        normalized_url=f"https://{host}/{owner}/{repo}{suffix}",
        host=host,
        owner=owner,
        repo=repo,
        ref_kind=ref_kind,
        ref=ref,
        snapshot_id="",
    )


def _parse_host(original: str, authority: str) -> str:
    """Lower-case and check the host; user info is dropped so credentials never reach output."""
    host = authority.rpartition("@")[2].lower()
    if not host:
        raise ContextParseError("no host", original)
    match = _HOST_RE.fullmatch(host)
    if match is None:
        raise ContextParseError(f"invalid host '{host}'", original)
    name = match["name"]
    if "." not in name and name != "localhost":
        raise ContextParseError(f"no host ('{name}' is not a host name)", original)
    return host


def _parse_selector(original: str, extra: list[str]) -> tuple[RefKind, str, str]:
    """Read what follows owner/repo: ``(ref_kind, ref, normalised URL suffix)``.

    As upstream's GitHub parser: ``tree/<ref>`` (the rest is the branch), ``blob/<ref>/<path>`` and
    ``commits/<ref>`` select a branch, ``releases/tag/<tag>`` a tag, ``commit/<sha>`` a commit (40
    hex characters only), ``pull/<n>`` and ``issues/<n>`` a pull request or an issue; any other
    path opens the default branch ("Open in Gitpod" from a file or wiki page sends such paths).
    """
    if not extra:
        return "head", "", ""
    # GitLab puts its pages under '-/': '-/tree/x', '-/commit/x', '-/merge_requests/1'.
    gitlab = extra[0] == "-"
    parts = extra[1:] if gitlab else extra
    if not parts:
        return "head", "", ""
    head, *tail = parts
    if head in ("tree", "blob", "commits", "commit", "releases") and any(not p for p in tail):
        raise ContextParseError("empty path segment", original)

    if head == "tree" and tail:
        ref = "/".join(tail)
        return "branch", ref, f"/tree/{ref}"
    if head in ("blob", "commits") and tail:
        ref = tail[0]  # blob/<ref>/<path>: the path names a file on the branch
        return "branch", ref, f"/tree/{ref}"
    if head == "releases" and len(tail) == 2 and tail[0] == "tag":
        return "tag", tail[1], f"/releases/tag/{tail[1]}"
    if head == "commit" and len(tail) == 1:
        if _SHA_RE.fullmatch(tail[0]) is None:
            raise ContextParseError("commit sha must be 40 hex characters", original)
        sha = tail[0].lower()
        return "commit", sha, f"/commit/{sha}"
    pull_word = "merge_requests" if gitlab else "pull"
    if head in (pull_word, "issues") and len(tail) == 1:
        what = "issue" if head == "issues" else "pull request"
        number = _parse_number(original, tail[0], what)
        if head == "issues":
            return "issue", number, f"/issues/{number}"
        return "pull", number, f"/pull/{number}"
    return "head", "", ""  # any other path: the default branch, as upstream fell back


def _parse_number(original: str, text: str, what: str) -> str:
    """A positive decimal number in canonical form (no leading zeros)."""
    if _NUMBER_RE.fullmatch(text) is None or int(text) == 0:
        raise ContextParseError(f"{what} number must be a positive integer", original)
    return str(int(text))
