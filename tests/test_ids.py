"""Tests for simulator.core.ids: upstream formats, and determinism from a caller-seeded rng."""

from __future__ import annotations

import random
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core import ids


def _rng(seed: int = 1) -> random.Random:
    return random.Random(seed)


# --- workspace ids ---------------------------------------------------------------------------


def test_workspace_id_upstream_example_shape() -> None:
    wid = ids.workspace_id(_rng(), "gitpod-io", "gitpod")
    assert wid.startswith("gitpodio-gitpod-")
    assert len(wid) == len("gitpodio-gitpod-") + 11
    assert re.fullmatch(r"[0-9a-z]{11}", wid.rsplit("-", 1)[1])
    assert ids.is_workspace_id(wid)


def test_workspace_id_segments_lowercased_and_stripped() -> None:
    wid = ids.workspace_id(_rng(), "My_Org.Name", "Repo-Name.JS")
    assert wid.startswith("myorgname-reponamejs-")


def test_workspace_id_long_owner_cuts_repo_to_keep_36_chars() -> None:
    wid = ids.workspace_id(_rng(), "a" * 40, "b" * 40)
    first, second, suffix = wid.split("-")
    assert first == "a" * 16
    assert second == "b" * 7  # min(16, 23 - 16)
    assert len(suffix) == 11
    assert len(wid) == 36
    assert ids.is_workspace_id(wid)


def test_workspace_id_short_owner_keeps_repo_up_to_16() -> None:
    wid = ids.workspace_id(_rng(), "ab", "c" * 30)
    assert wid.split("-")[:2] == ["ab", "c" * 16]


def test_workspace_id_repo_limit_depends_on_owner_length() -> None:
    wid = ids.workspace_id(_rng(), "o" * 10, "r" * 30)
    assert wid.split("-")[:2] == ["o" * 10, "r" * 13]


@pytest.mark.parametrize(
    ("owner", "repo", "kept_owner", "kept_repo"),
    [
        ("", "", None, None),
        ("a", "repo", None, "repo"),
        ("f", "bar", None, "bar"),
        ("owner", "x", "owner", None),
        ("--", "repo", None, "repo"),
        ("owner", "...", "owner", None),
        ("ü", "日本", None, None),
    ],
)
def test_workspace_id_replaces_only_the_short_segment(
    owner: str, repo: str, kept_owner: str | None, kept_repo: str | None
) -> None:
    """BEHAVIOUR.md: a segment with fewer than 2 usable chars is replaced by a random word (a
    colour for the owner, an animal for the repository) while the other segment is kept."""
    wid = ids.workspace_id(_rng(), owner, repo)
    first, second, suffix = wid.split("-")
    assert first == kept_owner if kept_owner else first in ids.COLOURS
    assert second == kept_repo if kept_repo else second in ids.ANIMALS
    assert len(suffix) == 11
    assert ids.is_workspace_id(wid)


def test_fallback_names_fit_the_id_format() -> None:
    assert len(ids.COLOURS) == len(set(ids.COLOURS)) >= 20
    assert len(ids.ANIMALS) == len(set(ids.ANIMALS)) >= 30
    for name in ids.COLOURS + ids.ANIMALS:
        assert re.fullmatch(r"[a-z]{3,10}", name), name


def test_workspace_id_deterministic_per_seed() -> None:
    a = [ids.workspace_id(_rng(7), "gitpod-io", "gitpod") for _ in range(2)]
    assert a[0] == a[1]
    assert ids.workspace_id(_rng(8), "gitpod-io", "gitpod") != a[0]
    assert ids.workspace_id(_rng(7), "", "") == ids.workspace_id(_rng(7), "", "")


def test_workspace_ids_from_one_rng_differ() -> None:
    rng = _rng()
    drawn = {ids.workspace_id(rng, "gitpod-io", "gitpod") for _ in range(200)}
    assert len(drawn) == 200


@given(owner=st.text(max_size=60), repo=st.text(max_size=60), seed=st.integers())
def test_workspace_id_always_matches_regex(owner: str, repo: str, seed: int) -> None:
    wid = ids.workspace_id(random.Random(seed), owner, repo)
    assert ids.WORKSPACE_ID_RE.match(wid)
    assert ids.is_workspace_id(wid)
    assert len(wid) <= 36


@pytest.mark.parametrize(
    "text",
    [
        "gitpodio-gitpod-isq6xj458lj",
        "ab-cd-12345678",
        "a" * 16 + "-" + "b" * 16 + "-" + "c" * 11,
    ],
)
def test_is_workspace_id_accepts(text: str) -> None:
    assert ids.is_workspace_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gitpodio-gitpod-isq6xj458lj\n",
        "GitpodIO-gitpod-isq6xj458lj",
        "a-gitpod-isq6xj458lj",
        "gitpodio-gitpod-1234567",
        "gitpodio-gitpod-123456789012",
        "a" * 17 + "-bb-12345678",
        "gitpodio_gitpod-isq6xj458lj",
        "gitpodio-gitpod",
        "d3b07384-d113-4ec4-a3a5-9b6c8f0e6f11",
    ],
)
def test_is_workspace_id_rejects(text: str) -> None:
    assert not ids.is_workspace_id(text)


# --- instance ids ------------------------------------------------------------------------------


def test_instance_id_is_canonical_uuid4() -> None:
    rng = _rng()
    for _ in range(50):
        iid = ids.instance_id(rng)
        parsed = uuid.UUID(iid)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == iid
        assert ids.is_instance_id(iid)
        assert ids.INSTANCE_ID_RE.match(iid)


def test_instance_id_deterministic_per_seed() -> None:
    assert ids.instance_id(_rng(3)) == ids.instance_id(_rng(3))
    assert ids.instance_id(_rng(3)) != ids.instance_id(_rng(4))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "D3B07384-D113-4EC4-A3A5-9B6C8F0E6F11",
        "d3b07384d1134ec4a3a59b6c8f0e6f11",
        "{d3b07384-d113-4ec4-a3a5-9b6c8f0e6f11}",
        "d3b07384-d113-4ec4-a3a5-9b6c8f0e6f11\n",
        "d3b07384-d113-4ec4-a3a5-9b6c8f0e6f1g",
        "gitpodio-gitpod-isq6xj458lj",
    ],
)
def test_is_instance_id_rejects(text: str) -> None:
    assert not ids.is_instance_id(text)


# --- tokens ------------------------------------------------------------------------------------


def test_owner_token_alphabet_is_the_spec_class() -> None:
    assert set(ids.OWNER_TOKEN_ALPHABET) == set(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_.-"
    )
    assert len(ids.OWNER_TOKEN_ALPHABET) == len(set(ids.OWNER_TOKEN_ALPHABET))


def test_owner_token_format_and_determinism() -> None:
    key = ids.user_key(5, "alice")
    instances = [ids.instance_id(_rng(n)) for n in range(100)]
    tokens = [ids.owner_token(key, iid) for iid in instances]
    for token in tokens:
        assert re.fullmatch(r"[0-9A-Za-z_.\-]{32}", token)
    assert len(set(tokens)) == 100
    assert ids.owner_token(ids.user_key(5, "alice"), instances[0]) == tokens[0]
    assert len(set("".join(tokens))) == len(ids.OWNER_TOKEN_ALPHABET)  # every character occurs


def test_each_user_has_a_key_of_their_own_from_the_seed() -> None:
    keys = {ids.user_key(seed, user) for seed in (0, 1) for user in ("alice", "bob", "alice\0")}
    assert len(keys) == 6
    iid = ids.instance_id(_rng())
    assert ids.owner_token(ids.user_key(0, "alice"), iid) != ids.owner_token(
        ids.user_key(0, "bob"), iid
    )


def test_user_token_format() -> None:
    token = ids.user_token(_rng())
    assert re.fullmatch(r"gitpod_sim_[0-9a-z]{40}", token)
    assert ids.user_token(_rng(5)) == ids.user_token(_rng(5))
    assert ids.user_token(_rng(5)) != ids.user_token(_rng(6))


def test_page_token_format() -> None:
    token = ids.page_token(_rng())
    assert re.fullmatch(r"[0-9A-Za-z_\-]{24}", token)
    assert ids.page_token(_rng(5)) == ids.page_token(_rng(5))


def test_same_seed_same_sequence_of_mixed_ids() -> None:
    def sequence(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [
            ids.workspace_id(rng, "gitpod-io", "gitpod"),
            ids.instance_id(rng),
            ids.owner_token(ids.user_key(seed, "u"), ids.instance_id(rng)),
            ids.workspace_id(rng, "", ""),
            ids.user_token(rng),
            ids.page_token(rng),
        ]

    assert sequence(42) == sequence(42)
    assert sequence(42) != sequence(43)


def test_functions_do_not_touch_global_random() -> None:
    random.seed(99)
    expected = random.random()
    random.seed(99)
    rng = _rng()
    ids.workspace_id(rng, "", "")
    ids.instance_id(rng)
    ids.owner_token(ids.user_key(1, "u"), ids.instance_id(rng))
    ids.user_token(rng)
    ids.page_token(rng)
    assert random.random() == expected


# --- head commits ------------------------------------------------------------------------------


def test_head_commit_is_sha1_of_seed_repository_ref() -> None:
    sha = ids.head_commit(1, "github.com/gitpod-io/gitpod", "main")
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
    # sha1(b"1\0github.com/gitpod-io/gitpod\0main"), computed independently.
    import hashlib

    assert sha == hashlib.sha1(b"1\x00github.com/gitpod-io/gitpod\x00main").hexdigest()


def test_head_commit_deterministic_and_input_sensitive() -> None:
    base = ids.head_commit(1, "github.com/a/b", "main")
    assert ids.head_commit(1, "github.com/a/b", "main") == base
    assert ids.head_commit(2, "github.com/a/b", "main") != base
    assert ids.head_commit(1, "github.com/a/c", "main") != base
    assert ids.head_commit(1, "github.com/a/b", "dev") != base
    # The separator keeps (repo, ref) pairs from colliding when concatenated.
    assert ids.head_commit(1, "ab", "c") != ids.head_commit(1, "a", "bc")


def test_instance_id_is_uuid4_of_the_same_bits() -> None:
    """Formatted by hand (a hot path), it must be exactly what uuid.UUID(version=4) gives."""
    import uuid

    mine, theirs = random.Random(11), random.Random(11)
    for _ in range(20_000):
        expected = str(uuid.UUID(int=theirs.getrandbits(128), version=4))
        assert ids.instance_id(mine) == expected


@given(seed=st.integers(), length=st.integers(0, 64))
def test_draws_are_what_random_choices_draws(seed: int, length: int) -> None:
    """Ids and tokens from a seed stay what they were (saved states go on as they did)."""
    for alphabet in (ids.WORKSPACE_ID_ALPHABET, ids.PAGE_TOKEN_ALPHABET):
        fast, reference = random.Random(seed), random.Random(seed)
        assert ids._draw(fast, alphabet, length) == "".join(reference.choices(alphabet, k=length))
        assert fast.getstate() == reference.getstate()
