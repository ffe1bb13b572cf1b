"""Tests for core.context_urls: every normalisation rule and every error, plus properties."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.core.context_urls import ContextParseError, ParsedContext, parse_context_url

# --- normalisation of plain repository URLs ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "https://github.com/gitpod-io/gitpod",
        "http://github.com/gitpod-io/gitpod",
        "HTTPS://GitHub.com/gitpod-io/gitpod",
        "github.com/gitpod-io/gitpod",
        "git@github.com:gitpod-io/gitpod.git",
        "git@github.com:gitpod-io/gitpod",
        "https://github.com/gitpod-io/gitpod.git",
        "https://github.com/gitpod-io/gitpod/",
        "https://github.com/gitpod-io/gitpod///",
        "https://github.com/gitpod-io/gitpod?tab=readme",
        "https://github.com/gitpod-io/gitpod#readme",
        "https://github.com/gitpod-io/gitpod.git/?x=1#y",
        "  https://github.com/gitpod-io/gitpod \n",
        "https://user:secret@github.com/gitpod-io/gitpod",
    ],
)
def test_repository_spellings_normalise_to_one_url(raw: str) -> None:
    ctx = parse_context_url(raw)
    assert ctx.kind == "git"
    assert ctx.normalized_url == "https://github.com/gitpod-io/gitpod"
    assert ctx.host == "github.com"
    assert ctx.owner == "gitpod-io"
    assert ctx.repo == "gitpod"
    assert ctx.ref_kind == "head"
    assert ctx.ref == ""
    assert ctx.snapshot_id == ""
    assert ctx.original == raw.strip().replace("user:secret@", "")  # credentials never kept
    assert ctx.repository == "github.com/gitpod-io/gitpod"
    assert ctx.description == "gitpod-io/gitpod"


def test_full_result_for_scp_like_url() -> None:
    assert parse_context_url("git@github.com:gitpod-io/gitpod.git") == ParsedContext(
        original="git@github.com:gitpod-io/gitpod.git",
        kind="git",
        normalized_url="https://github.com/gitpod-io/gitpod",
        host="github.com",
        owner="gitpod-io",
        repo="gitpod",
        ref_kind="head",
        ref="",
        snapshot_id="",
    )


def test_owner_and_repo_keep_case_but_repository_key_is_lower() -> None:
    ctx = parse_context_url("https://GitLab.com/Some-Org/My.Repo")
    assert ctx.host == "gitlab.com"
    assert (ctx.owner, ctx.repo) == ("Some-Org", "My.Repo")
    assert ctx.normalized_url == "https://gitlab.com/Some-Org/My.Repo"
    assert ctx.repository == "gitlab.com/some-org/my.repo"


def test_other_hosts_localhost_and_ports() -> None:
    assert parse_context_url("bitbucket.org/o/r").normalized_url == "https://bitbucket.org/o/r"
    assert parse_context_url("http://localhost/o/r").host == "localhost"
    ctx = parse_context_url("https://git.example.com:8443/team/app")
    assert ctx.host == "git.example.com:8443"
    assert ctx.normalized_url == "https://git.example.com:8443/team/app"


# --- selectors after owner/repo ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ref_kind", "ref", "normalized", "description"),
    [
        (
            "https://github.com/a/b/tree/main",
            "branch",
            "main",
            "https://github.com/a/b/tree/main",
            "a/b - main",
        ),
        (
            "github.com/a/b/tree/feature/x/",
            "branch",
            "feature/x",
            "https://github.com/a/b/tree/feature/x",
            "a/b - feature/x",
        ),
        (
            "https://github.com/a/b.git/tree/v1.2",
            "branch",
            "v1.2",
            "https://github.com/a/b/tree/v1.2",
            "a/b - v1.2",
        ),
        (
            "https://github.com/a/b/commit/ABCDEF0123456789abcdef0123456789ABCDEF01",
            "commit",
            "abcdef0123456789abcdef0123456789abcdef01",
            "https://github.com/a/b/commit/abcdef0123456789abcdef0123456789abcdef01",
            "a/b - commit abcdef0",
        ),
        (
            "https://github.com/a/b/blob/main/README.md",
            "branch",
            "main",
            "https://github.com/a/b/tree/main",
            "a/b - main",
        ),
        (
            "https://github.com/a/b/commits/dev",
            "branch",
            "dev",
            "https://github.com/a/b/tree/dev",
            "a/b - dev",
        ),
        (
            "https://github.com/a/b/releases/tag/v1.0",
            "tag",
            "v1.0",
            "https://github.com/a/b/releases/tag/v1.0",
            "a/b - v1.0",
        ),
        ("https://github.com/a/b/wiki", "head", "", "https://github.com/a/b", "a/b"),
        ("https://github.com/a/b/pull/1/files", "head", "", "https://github.com/a/b", "a/b"),
        ("https://gitlab.com/a/b/-", "head", "", "https://gitlab.com/a/b", "a/b"),
        (
            "https://github.com/a/b/pull/42",
            "pull",
            "42",
            "https://github.com/a/b/pull/42",
            "a/b - PR #42",
        ),
        (
            "https://github.com/a/b/pull/007",
            "pull",
            "7",
            "https://github.com/a/b/pull/7",
            "a/b - PR #7",
        ),
        (
            "https://gitlab.com/a/b/-/merge_requests/5",
            "pull",
            "5",
            "https://gitlab.com/a/b/pull/5",
            "a/b - PR #5",
        ),
        (
            "https://github.com/a/b/issues/9",
            "issue",
            "9",
            "https://github.com/a/b/issues/9",
            "a/b - issue #9",
        ),
        (
            "https://gitlab.com/a/b/-/tree/dev/y",
            "branch",
            "dev/y",
            "https://gitlab.com/a/b/tree/dev/y",
            "a/b - dev/y",
        ),
        (
            "https://gitlab.com/a/b/-/commit/deadbeef" + "0" * 32,
            "commit",
            "deadbeef" + "0" * 32,
            "https://gitlab.com/a/b/commit/deadbeef" + "0" * 32,
            "a/b - commit deadbee",
        ),
        (
            "https://gitlab.com/a/b/-/issues/3",
            "issue",
            "3",
            "https://gitlab.com/a/b/issues/3",
            "a/b - issue #3",
        ),
    ],
)
def test_selectors(raw: str, ref_kind: str, ref: str, normalized: str, description: str) -> None:
    ctx = parse_context_url(raw)
    assert ctx.kind == "git"
    assert (ctx.ref_kind, ctx.ref) == (ref_kind, ref)
    assert ctx.normalized_url == normalized
    assert ctx.description == description


# --- prefixes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "prebuild/https://github.com/a/b/tree/feat/x",
        "imagebuild/https://github.com/a/b/tree/feat/x",
        "referrer:vscode/https://github.com/a/b/tree/feat/x",
        "FOO=bar/https://github.com/a/b/tree/feat/x",
        "A=1,B_2=two/https://github.com/a/b/tree/feat/x",
        "EMPTY=/https://github.com/a/b/tree/feat/x",
        "prebuild/referrer:vscode/FOO=bar/https://github.com/a/b/tree/feat/x",
        "FOO=bar/imagebuild/referrer:jetbrains-gateway/prebuild/github.com/a/b/tree/feat/x",
        "prebuild/prebuild/git@github.com:a/b.git/tree/feat/x",
    ],
)
def test_prefixes_are_stripped_in_any_order(raw: str) -> None:
    ctx = parse_context_url(raw)
    assert ctx.original == raw
    assert ctx.normalized_url == "https://github.com/a/b/tree/feat/x"
    assert (ctx.ref_kind, ctx.ref) == ("branch", "feat/x")


# --- snapshots ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "snapshot_id"),
    [
        ("snapshot/abc", "abc"),
        ("  snapshot/0f1e-2d3c_X.y  ", "0f1e-2d3c_X.y"),
        ("prebuild/snapshot/abc", "abc"),
        ("referrer:vscode/A=1/snapshot/s-1", "s-1"),
    ],
)
def test_snapshot_contexts(raw: str, snapshot_id: str) -> None:
    ctx = parse_context_url(raw)
    assert ctx.kind == "snapshot"
    assert ctx.snapshot_id == snapshot_id
    assert ctx.original == raw.strip()
    assert (ctx.normalized_url, ctx.host, ctx.owner, ctx.repo) == ("", "", "", "")
    assert (ctx.ref_kind, ctx.ref) == ("head", "")
    assert ctx.repository == ""
    assert ctx.description == f"snapshot {snapshot_id}"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty context URL"),
        ("   \t\n", "empty context URL"),
        ("https://github.com/a/b c", "whitespace"),
        ("https://github.com/a/\tb", "whitespace"),
        ("ftp://github.com/a/b", "unknown scheme 'ftp'"),
        ("ssh://git@github.com/a/b", "unknown scheme 'ssh'"),
        ("https:///a/b", "no host"),
        ("https://", "no host"),
        ("a/b", "no host"),
        ("github/a/b", "no host"),
        ("https://exa_mple.com/a/b", "invalid host"),
        ("https://github.com", "owner and repository"),
        ("https://github.com/a", "owner and repository"),
        ("https://github.com/a/", "owner and repository"),
        ("https://github.com//b", "empty owner"),
        ("https://github.com/a/.git", "empty repository"),
        ("snapshot/", "empty snapshot id"),
        ("prebuild/snapshot/", "empty snapshot id"),
        ("snapshot/a/b", "snapshot id"),
        ("prebuild/", "nothing left"),
        ("https://github.com/a/b/tree/a//b", "empty path segment"),
        ("https://github.com/a/b/commit/xyz1234", "commit sha"),
        ("https://github.com/a/b/commit/123456", "commit sha"),
        ("https://github.com/a/b/commit/0123456", "commit sha must be 40 hex characters"),
        ("https://github.com/a/b/commit/" + "a" * 41, "commit sha"),
        ("https://github.com/a/b/pull/abc", "pull request number"),
        ("https://github.com/a/b/pull/0", "pull request number"),
        ("https://github.com/a/b/issues/x", "issue number"),
        ("https://gitlab.com/a/b/-/merge_requests/x", "pull request number"),
    ],
)
def test_errors(raw: str, why: str) -> None:
    with pytest.raises(ContextParseError) as excinfo:
        parse_context_url(raw)
    message = str(excinfo.value)
    assert message.startswith("context parse error: ")
    assert why in message
    assert excinfo.value.reason in message
    if raw.strip():  # echoed as given, user info (credentials) taken out
        assert message.endswith(": " + raw.strip().replace("git@github.com/", "github.com/"))


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^context parse error: "):
        parse_context_url("ftp://x.org/a/b")


def test_parsed_context_is_frozen() -> None:
    ctx = parse_context_url("github.com/a/b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.repo = "c"  # type: ignore[misc]


# --- properties --------------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_SEGMENT = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(_ALNUM),
    st.text(alphabet=_ALNUM + "_.-", max_size=20),
).filter(lambda s: not s.endswith(".git"))
_BRANCH = st.lists(
    st.text(alphabet=_ALNUM + "_.-", min_size=1, max_size=10), min_size=1, max_size=3
)


@given(
    host=st.sampled_from(["github.com", "gitlab.com", "bitbucket.org", "git.example.com"]),
    owner=_SEGMENT,
    repo=_SEGMENT,
    branch=st.one_of(st.none(), _BRANCH.map("/".join)),
)
def test_normalised_url_is_a_fixed_point(
    host: str, owner: str, repo: str, branch: str | None
) -> None:
    raw = f"{host}/{owner}/{repo}" + (f"/tree/{branch}" if branch else "")
    first = parse_context_url(raw)
    assert (first.owner, first.repo) == (owner, repo)
    again = parse_context_url(first.normalized_url)
    assert again.normalized_url == first.normalized_url
    assert dataclasses.replace(again, original=first.original) == first
    scp = parse_context_url(f"git@{host}:{owner}/{repo}.git")
    assert scp.repository == first.repository


@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_raises_context_parse_error(raw: str) -> None:
    try:
        ctx = parse_context_url(raw)
    except ContextParseError as exc:
        assert str(exc).startswith("context parse error: ")
        return
    assert ctx.original == raw.strip()
    if ctx.kind == "git":
        assert ctx.normalized_url.startswith("https://")
        assert ctx.owner and ctx.repo
    else:
        assert ctx.snapshot_id
