"""Identifiers and tokens in upstream Gitpod's formats, drawn from a caller-seeded random source.

Every function that needs randomness takes the ``random.Random`` to draw from, so one seed and the
same sequence of calls always give the same ids, byte for byte. Nothing here touches global random
state or the clock.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import random
import re
import string
from collections.abc import Sequence
from math import floor

__all__ = [
    "ANIMALS",
    "COLOURS",
    "INSTANCE_ID_RE",
    "OWNER_TOKEN_ALPHABET",
    "PAGE_TOKEN_ALPHABET",
    "USER_TOKEN_PREFIX",
    "WORKSPACE_ID_ALPHABET",
    "WORKSPACE_ID_RE",
    "head_commit",
    "instance_id",
    "is_instance_id",
    "is_workspace_id",
    "owner_token",
    "page_token",
    "user_key",
    "user_token",
    "workspace_id",
]

# \A and \Z rather than ^ and $: '$' also matches before a trailing newline, which would let
# 'id\n' through any caller that uses .match() instead of .fullmatch().
WORKSPACE_ID_RE: re.Pattern[str] = re.compile(r"\A[0-9a-z]{2,16}-[0-9a-z]{2,16}-[0-9a-z]{8,11}\Z")
INSTANCE_ID_RE: re.Pattern[str] = re.compile(
    r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
)

WORKSPACE_ID_ALPHABET = string.digits + string.ascii_lowercase
# [0-9A-Za-z_.-]: 10 + 26 + 26 + 3 = 65 characters.
OWNER_TOKEN_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase + "_.-"
# URL-safe base64's alphabet, so a page token can sit in a query string unescaped.
PAGE_TOKEN_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase + "_-"
USER_TOKEN_PREFIX = "gitpod_sim_"

# Fallback names for workspaces whose owner/repo give no usable segment (snapshots, odd names).
# Each 3..10 lower-case letters so '<colour>-<animal>' always fits the id format.
COLOURS: tuple[str, ...] = (
    "amber", "azure", "beige", "black", "blue", "bronze", "coral", "crimson", "cyan", "gold",
    "green", "indigo", "ivory", "lime", "magenta", "olive", "orange", "purple", "silver", "teal",
)  # fmt: skip
ANIMALS: tuple[str, ...] = (
    "badger", "beaver", "bison", "camel", "cheetah", "crane", "dolphin", "eagle", "falcon",
    "ferret", "gecko", "giraffe", "heron", "jackal", "koala", "lemur", "llama", "lynx", "marmot",
    "moose", "otter", "panda", "parrot", "penguin", "puffin", "raven", "sloth", "tiger", "walrus",
    "wombat",
)  # fmt: skip

_SEGMENT_MAX = 16
_SEGMENTS_MAX_TOTAL = 23  # 23 + 2 dashes + 11 random chars = 36, upstream's longest id
_SEGMENT_MIN = 2
_WORKSPACE_ID_RANDOM_LEN = 11
_NOT_ID_CHAR_RE = re.compile(r"[^a-z0-9]")


def _draw(rng: random.Random, alphabet: Sequence[str], length: int) -> str:
    """``length`` characters from ``alphabet``: exactly what ``rng.choices(alphabet, k=length)``
    draws (``floor(random() * n)`` per character, so stable across Python versions), without
    its generality, which cost a third more per id."""
    draw = rng.random
    n = float(len(alphabet))
    return "".join([alphabet[floor(draw() * n)] for _ in range(length)])


@functools.lru_cache(maxsize=4096)
def _clean_segment(text: str) -> str:
    """Lower-case and keep only [a-z0-9], as upstream does for id segments (cached: the same
    owners and repositories come again and again)."""
    return _NOT_ID_CHAR_RE.sub("", text.lower())


def workspace_id(rng: random.Random, owner: str, repo: str) -> str:
    """A workspace id ``<owner>-<repo>-<11 random>``, e.g. ``gitpodio-gitpod-isq6xj458lj``.

    A segment shorter than 2 usable characters (also an empty one, as for snapshots) is replaced
    by a random word, a colour for the owner and an animal for the repository, while the other
    segment is kept (upstream's own test: ``['f', 'bar']`` gives ``<colour>-bar-<11>``). The rng
    draws the colour, then the animal (each only when needed), then the 11 random characters.
    """
    prefix = _prefix(owner, repo)
    if prefix is None:  # a segment is replaced by a random word
        first = _clean_segment(owner)
        second = _clean_segment(repo)
        if len(first) < _SEGMENT_MIN:
            first = rng.choice(COLOURS)
        if len(second) < _SEGMENT_MIN:
            second = rng.choice(ANIMALS)
        prefix = _joined(first, second)
    return prefix + _draw(rng, WORKSPACE_ID_ALPHABET, _WORKSPACE_ID_RANDOM_LEN)


@functools.lru_cache(maxsize=4096)
def _prefix(owner: str, repo: str) -> str | None:
    """``<owner>-<repo>-`` when both segments are usable as they are (no random word), cached:
    the same repositories come again and again."""
    first = _clean_segment(owner)
    second = _clean_segment(repo)
    if len(first) < _SEGMENT_MIN or len(second) < _SEGMENT_MIN:
        return None
    return _joined(first, second)


def _joined(first: str, second: str) -> str:
    """``<first>-<second>-``, each cut so the id stays within upstream's 36 characters (the
    colours and animals are short enough never to be cut)."""
    first = first[:_SEGMENT_MAX]
    return f"{first}-{second[: min(_SEGMENT_MAX, _SEGMENTS_MAX_TOTAL - len(first))]}-"


def instance_id(rng: random.Random) -> str:
    """A canonical lower-case UUID v4 built from 128 rng bits (version and variant bits forced)."""
    n = (rng.getrandbits(128) & _UUID_KEEP) | _UUID_V4  # as uuid.UUID(int=..., version=4)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_V4 = (0x8000 << 48) | (4 << 76)
"""The variant (RFC 4122) and version (4) bits ``uuid.UUID(version=4)`` forces."""


def user_key(seed: int, user_id: str, purpose: str = "owner-tokens") -> bytes:
    """The key of one user's own secret stream: HMAC-SHA256 keyed by the seed, of the purpose
    and the user. Another user's secrets come from another key, so a caller who does not know
    the seed learns nothing about anyone else's from their own."""
    message = f"{purpose}\0{user_id}".encode()
    return hmac.new(f"gitpod-sim:{seed}".encode(), message, hashlib.sha256).digest()


def owner_token(key: bytes, instance_id: str) -> str:
    """A 32-character owner token from ``[0-9A-Za-z_.-]``, new for every instance as upstream's:
    HMAC-SHA256 of the instance id under its owner's :func:`user_key`, read as 32 base-65
    digits (256 bits give 42; the bias of the top digit never reaches these 32)."""
    n = int.from_bytes(hmac.new(key, instance_id.encode(), hashlib.sha256).digest(), "big")
    chars = []
    for _ in range(32):
        n, digit = divmod(n, len(OWNER_TOKEN_ALPHABET))
        chars.append(OWNER_TOKEN_ALPHABET[digit])
    return "".join(chars)


def user_token(rng: random.Random) -> str:
    """A generated API token: ``gitpod_sim_`` then 40 of ``[0-9a-z]``, recognisable in logs."""
    return USER_TOKEN_PREFIX + _draw(rng, WORKSPACE_ID_ALPHABET, 40)


def page_token(rng: random.Random) -> str:
    """An opaque 24-character URL-safe pagination token; callers must not read meaning into it."""
    return _draw(rng, PAGE_TOKEN_ALPHABET, 24)


def head_commit(seed: int, repository: str, ref: str) -> str:
    """A stable fake 40-hex commit sha for ``ref`` of ``repository``: sha1 of seed, repo and ref.

    Deterministic without an rng so the same repository and ref resolve to the same commit no
    matter how many ids were drawn before.
    """
    data = f"{seed}\0{repository}\0{ref}".encode()
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def is_workspace_id(s: str) -> bool:
    """Whether ``s`` is a syntactically valid workspace id (invalid ones are INVALID_ARGUMENT)."""
    return WORKSPACE_ID_RE.fullmatch(s) is not None


def is_instance_id(s: str) -> bool:
    """Whether ``s`` is a canonical lower-case UUID (invalid ones are INVALID_ARGUMENT)."""
    return INSTANCE_ID_RE.fullmatch(s) is not None
