"""Who may call and what a workspace can start from: users and their tokens, prebuilds, and the
context a CreateAndStartWorkspace request resolves to.

Kept apart from the engine because none of it is lifecycle: it changes no phase and schedules no
event. Commits that a URL does not pin come from the seed, so the same seed resolves the same
branch to the same commit.
"""

from __future__ import annotations

from simulator.core import ids, limits
from simulator.core.context_urls import ContextParseError, ParsedContext, parse_context_url
from simulator.core.errors import AlreadyExists, InvalidArgument, NotFound
from simulator.core.model import Prebuild, User, WorkspaceContext
from simulator.core.seeds import RandomStreams


def parse_context(context_url: str) -> ParsedContext:
    """A context URL parsed, or INVALID_ARGUMENT saying what is wrong with it."""
    try:
        return parse_context_url(context_url)
    except ContextParseError as exc:
        raise InvalidArgument(str(exc)) from None


_MAX_CACHED_CONTEXTS = 4096


class Directory:
    """Users by id and by token, and finished prebuilds by id."""

    __slots__ = ("_by_token", "_contexts", "_owner_keys", "_streams", "prebuilds", "seed", "users")

    def __init__(self, seed: int, streams: RandomStreams) -> None:
        self.seed = seed
        self._streams = streams
        self.users: dict[str, User] = {}
        self._by_token: dict[str, User] = {}
        self.prebuilds: dict[str, Prebuild] = {}
        self._owner_keys: dict[str, bytes] = {}
        self._contexts: dict[str, tuple[WorkspaceContext, ParsedContext, str]] = {}
        """Contexts resolved from URLs (a pure function of the URL and the seed; both parts are
        immutable, so workspaces of one URL share them)."""

    def owner_key(self, user_id: str) -> bytes:
        """The key of ``user_id``'s owner tokens (:func:`ids.user_key`), derived once."""
        key = self._owner_keys.get(user_id)
        if key is None:
            key = self._owner_keys[user_id] = ids.user_key(self.seed, user_id)
        return key

    def add_user(self, user_id: str, token: str | None = None) -> User:
        """Register a caller. Without a token, one is generated from the seed."""
        if not user_id or any(c.isspace() for c in user_id):
            raise InvalidArgument(f"invalid user id {user_id!r}: must be non-empty, no whitespace")
        limits.name("user id", user_id)
        if user_id in self.users:
            raise AlreadyExists(f"user {user_id!r} already exists")
        if token is None:
            token = ids.user_token(self._streams.tokens)
        if not token or any(c.isspace() for c in token):
            raise InvalidArgument(
                f"invalid token for user {user_id!r}: must be non-empty, no whitespace"
            )
        limits.token("token", token)
        if token in self._by_token:
            raise AlreadyExists(f"token already belongs to user {self._by_token[token].id!r}")
        user = User(user_id, token)
        self.users[user_id] = user
        self._by_token[token] = user
        return user

    def user_by_token(self, token: str) -> User | None:
        return self._by_token.get(token)

    def add_prebuild(self, prebuild_id: str, context_url: str, commit: str = "") -> Prebuild:
        """Register a finished prebuild (the API has no call that makes one)."""
        if not prebuild_id or any(c.isspace() for c in prebuild_id):
            raise InvalidArgument(f"invalid prebuild id {prebuild_id!r}")
        limits.name("prebuild id", prebuild_id)
        if prebuild_id in self.prebuilds:
            raise AlreadyExists(f"prebuild {prebuild_id!r} already exists")
        context = parse_context(context_url)
        if context.kind != "git":
            raise InvalidArgument(f"a prebuild needs a git context, got {context_url!r}")
        if not commit:
            commit = self.commit_of(context)
        prebuild = Prebuild(prebuild_id, context, commit.lower())
        self.prebuilds[prebuild_id] = prebuild
        return prebuild

    def context_for(
        self, context_url: str | None, prebuild_id: str | None
    ) -> tuple[WorkspaceContext, ParsedContext, str]:
        """What a new workspace starts from (a prebuild when ``prebuild_id`` is set), the
        parsed URL its id comes from, and its description (one string for every workspace of
        the URL: it is kept with each)."""
        if prebuild_id is not None:
            if not prebuild_id.strip():
                raise InvalidArgument("prebuild_id must not be empty")
            prebuild = self.prebuilds.get(prebuild_id)
            if prebuild is None:
                raise NotFound(f"prebuild {prebuild_id!r} does not exist")
            parsed = prebuild.context
            return (
                WorkspaceContext(
                    context_url=parsed.original,
                    kind="prebuild",
                    normalized_url=parsed.normalized_url,
                    commit=prebuild.commit,
                    prebuild_id=prebuild.id,
                    repository=parsed.repository,
                ),
                parsed,
                parsed.description,
            )
        url = context_url or ""
        known = self._contexts.get(url)
        if known is not None:
            return known
        parsed = parse_context(url)
        if parsed.kind == "snapshot":
            context = WorkspaceContext(
                context_url=parsed.original, kind="snapshot", snapshot_id=parsed.snapshot_id
            )
        else:
            context = WorkspaceContext(
                context_url=parsed.original,
                kind="git",
                normalized_url=parsed.normalized_url,
                commit=self.commit_of(parsed),
                repository=parsed.repository,
            )
        if len(self._contexts) >= _MAX_CACHED_CONTEXTS:
            self._contexts.clear()
        resolved = (context, parsed, parsed.description)
        self._contexts[url] = resolved
        return resolved

    def commit_of(self, parsed: ParsedContext) -> str:
        """The commit a git context names: its own when it pins one, else the seed's head."""
        if parsed.ref_kind == "commit" and len(parsed.ref) == 40:
            return parsed.ref
        return ids.head_commit(self.seed, parsed.repository, parsed.ref_kind + ":" + parsed.ref)
