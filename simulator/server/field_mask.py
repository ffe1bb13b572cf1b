"""Validate and apply ``google.protobuf.FieldMask`` paths to betterproto2 messages.

Why: ListWorkspaces lets a client ask for a subset of each item's fields. A mask is validated and
compiled into a tree once per request, then every item is pruned by building a new message from
only the kept fields. That is cheaper than deep-copying each item and clearing fields, and it never
touches the (possibly shared or cached) input messages.

betterproto2 specifics this relies on:

* field metadata comes from ``Message._betterproto`` (``meta_by_field_name``, ``cls_by_field``,
  ``sorted_field_names``), built lazily from the dataclass fields and their type hints;
* an unset sub-message, proto3 ``optional`` scalar or oneof member is ``None``; a oneof is "set"
  through whichever one member is not ``None`` (``betterproto2.which_one_of``), so copying members
  as they are keeps the oneof consistent;
* well-known wrapper types are "unwrapped" (``google.protobuf.Timestamp`` becomes a ``datetime``):
  their metadata has ``unwrap`` set and ``cls_by_field`` names the Python type, not a message, so
  they are leaves here.

Paths use proto field names, which betterproto2 uses as attribute names unless a name clashes with
a Python keyword or builtin (then it gets renamed; nothing in gitpod.v1 does).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from simulator.server.deferred import deferred_module

if TYPE_CHECKING:
    import betterproto2
else:  # loaded by the first mask compiled (start-up time: see deferred.py)
    betterproto2 = deferred_module("betterproto2")

__all__ = ["MAX_PATH_SEGMENTS", "FieldMaskError", "FieldMaskPlan"]

MAX_PATH_SEGMENTS: Final = 16
"""Deepest path accepted; real messages are far shallower, so deeper masks are hostile or wrong."""

_MAX_SHOWN_PATH: Final = 120
"""Paths quoted in error messages are cut to this length so a huge hostile path stays readable."""

M = TypeVar("M", bound="betterproto2.Message")


class FieldMaskError(ValueError):
    """A field mask path that cannot be applied to the message type; the text says which and why.

    A ``ValueError`` so a service can map it to INVALID_ARGUMENT without importing this module.
    """


class _Kind(enum.Enum):
    """How a field's value is copied and whether a path may continue below it."""

    SCALAR = "scalar"  # str / int / float / bool / bytes; immutable
    ENUM = "enum"  # betterproto2.Enum member; immutable
    WRAPPED = "wrapped"  # unwrapped well-known type (Timestamp -> datetime); immutable leaf
    MESSAGE = "message"  # singular sub-message; the only kind a path may descend into
    REPEATED = "repeated"  # list of scalars / enums / messages
    MAP = "map"  # dict of key -> scalar / enum / message


@dataclass(frozen=True, slots=True)
class _FieldInfo:
    """What the mask code needs to know about one field of one message class."""

    name: str
    kind: _Kind
    proto_type: str
    # The message class for MESSAGE fields, the item class for repeated message fields and the
    # value class for maps with message values; None when values are immutable leaves.
    message_type: type[betterproto2.Message] | None
    wrapped_name: str  # e.g. "Timestamp" for WRAPPED fields, "" otherwise

    def describe(self) -> str:
        """Why a path cannot go below this field, in words for an error message."""
        if self.kind is _Kind.ENUM:
            return "an enum field"
        if self.kind is _Kind.WRAPPED:
            return f"a {self.wrapped_name} field (treated as a single value)"
        if self.kind is _Kind.REPEATED:
            return "a repeated field (a mask can only name it as a whole)"
        if self.kind is _Kind.MAP:
            return "a map field (a mask can only name it as a whole)"
        return f"a {self.proto_type} field"


_FIELDS_CACHE: dict[type[betterproto2.Message], Mapping[str, _FieldInfo]] = {}


def _is_message_class(obj: object) -> bool:
    """True for a generated betterproto2 message class (not an instance, not a wrapped type)."""
    return isinstance(obj, type) and issubclass(obj, betterproto2.Message)


def _fields_of(message_type: type[betterproto2.Message]) -> Mapping[str, _FieldInfo]:
    """Per-class field table in proto field-number order, cached (the set of classes is finite)."""
    cached = _FIELDS_CACHE.get(message_type)
    if cached is not None:
        return cached
    # ``_betterproto`` is a classproperty whose stubs mypy cannot bind to a concrete class.
    meta_cls: betterproto2.ProtoClassMetadata = cast(Any, message_type)._betterproto
    table: dict[str, _FieldInfo] = {}
    for name in meta_cls.sorted_field_names:
        meta = meta_cls.meta_by_field_name[name]
        py_type: object = meta_cls.cls_by_field.get(name)
        wrapped_name = ""
        sub: type[betterproto2.Message] | None = None
        if meta.proto_type == betterproto2.TYPE_MAP:
            kind = _Kind.MAP
            value_type: object = meta_cls.cls_by_field.get(f"{name}.value")
            value_meta = meta.map_meta[1] if meta.map_meta else None
            if (
                value_meta is not None
                and value_meta.unwrap is None
                and _is_message_class(value_type)
            ):
                sub = cast(type[betterproto2.Message], value_type)
        elif meta.repeated:
            kind = _Kind.REPEATED
            if meta.unwrap is None and _is_message_class(py_type):
                sub = cast(type[betterproto2.Message], py_type)
        elif meta.proto_type == betterproto2.TYPE_MESSAGE and meta.unwrap is not None:
            kind = _Kind.WRAPPED
            wrapped_name = meta.unwrap().__name__
        elif meta.proto_type == betterproto2.TYPE_MESSAGE:
            kind = _Kind.MESSAGE
            if not _is_message_class(py_type):  # pragma: no cover - generated code guarantees it
                raise TypeError(f"{message_type.__name__}.{name}: no message class ({py_type!r})")
            sub = cast(type[betterproto2.Message], py_type)
        elif meta.proto_type == betterproto2.TYPE_ENUM:
            kind = _Kind.ENUM
        else:
            kind = _Kind.SCALAR
        table[name] = _FieldInfo(name, kind, meta.proto_type, sub, wrapped_name)
    _FIELDS_CACHE[message_type] = table
    return table


def _construct(message_type: type[M], kwargs: dict[str, Any]) -> M:
    """Build a message from keyword arguments (the generated dataclass ``__init__``)."""
    # betterproto2.Message declares no __init__; the generated dataclass subclasses do.
    return cast(Callable[..., M], message_type)(**kwargs)


def _copy_value(info: _FieldInfo, value: Any) -> Any:
    """Copy one field's value so the result shares no mutable object with the input."""
    if value is None or info.kind in (_Kind.SCALAR, _Kind.ENUM, _Kind.WRAPPED):
        return value  # immutable (str, int, bytes, Enum, datetime, ...) or unset
    if info.kind is _Kind.MESSAGE:
        return _copy_message(value)
    if info.kind is _Kind.REPEATED:
        if info.message_type is not None:
            return [_copy_message(item) for item in value]
        return list(value)
    # MAP
    if info.message_type is not None:
        return {key: _copy_message(item) for key, item in value.items()}
    return dict(value)


def _copy_message(message: M) -> M:
    """Structural copy through the field table; cheaper than ``copy.deepcopy`` and its memo."""
    kwargs = {
        name: _copy_value(info, getattr(message, name))
        for name, info in _fields_of(type(message)).items()
    }
    result = _construct(type(message), kwargs)
    result._unknown_fields = message._unknown_fields  # bytes: immutable, safe to share
    return result


@dataclass(frozen=True, slots=True)
class _Node:
    """Compiled mask for one message level: which fields to keep, and how deep.

    ``keep`` pairs each kept field with a child node to prune it further, or ``None`` to keep the
    whole field.
    """

    message_type: type[betterproto2.Message]
    keep: tuple[tuple[_FieldInfo, _Node | None], ...]


def _prune(node: _Node, message: M) -> M:
    """Build a new message holding only the fields ``node`` keeps (copied, never shared)."""
    kwargs: dict[str, Any] = {}
    for info, child in node.keep:
        value = getattr(message, info.name)
        if child is None:
            kwargs[info.name] = _copy_value(info, value)
        elif value is not None:  # a path into an unset sub-message leaves it unset
            kwargs[info.name] = _prune(child, value)
    return _construct(type(message), kwargs)


class _Builder:
    """Mutable tree used while compiling; frozen into ``_Node`` once all paths are in."""

    __slots__ = ("children", "infos", "message_type")

    def __init__(self, message_type: type[betterproto2.Message]) -> None:
        self.message_type = message_type
        # field name -> sub-builder, or None meaning "the whole field"
        self.children: dict[str, _Builder | None] = {}
        self.infos: dict[str, _FieldInfo] = {}

    def add(self, steps: Sequence[_FieldInfo]) -> None:
        """Record one validated path; a shorter path wins over longer ones below it."""
        builder = self
        for depth, info in enumerate(steps):
            last = depth == len(steps) - 1
            builder.infos[info.name] = info
            if info.name in builder.children and builder.children[info.name] is None:
                return  # an earlier path already keeps this whole field
            if last:
                builder.children[info.name] = None
                return
            sub = builder.children.get(info.name)
            if sub is None:
                assert info.message_type is not None  # validated: only messages are descended
                sub = _Builder(info.message_type)
                builder.children[info.name] = sub
            builder = sub

    def freeze(self) -> _Node:
        """Immutable node with fields in proto field-number order (deterministic output)."""
        order = _fields_of(self.message_type)
        keep: list[tuple[_FieldInfo, _Node | None]] = []
        for name in order:
            if name in self.children:
                child = self.children[name]
                keep.append((self.infos[name], None if child is None else child.freeze()))
        return _Node(self.message_type, tuple(keep))


def _show(path: str) -> str:
    """Quote a path for an error message, shortened if hostile-long."""
    if len(path) > _MAX_SHOWN_PATH:
        return repr(path[:_MAX_SHOWN_PATH] + "...")
    return repr(path)


def _resolve(message_type: type[betterproto2.Message], path: str) -> list[_FieldInfo]:
    """Check one path against the message classes; return the field at every step."""
    if path == "":
        raise FieldMaskError("empty path in field mask (a path must name at least one field)")
    # Count before splitting so a hostile path with millions of dots is rejected cheaply.
    segment_count = path.count(".") + 1
    if segment_count > MAX_PATH_SEGMENTS:
        raise FieldMaskError(
            f"path {_show(path)} has {segment_count} segments; at most {MAX_PATH_SEGMENTS} "
            "are allowed"
        )
    segments = path.split(".")
    if "" in segments:
        raise FieldMaskError(
            f"empty segment in path {_show(path)} (field names are separated by single dots, "
            "with none at the start or end)"
        )
    steps: list[_FieldInfo] = []
    current = message_type
    for depth, segment in enumerate(segments):
        if depth > 0:
            parent = steps[-1]
            if parent.kind is not _Kind.MESSAGE or parent.message_type is None:
                raise FieldMaskError(
                    f"cannot select {segment!r} in path {_show(path)}: "
                    f"{current.__name__}.{parent.name} is {parent.describe()}, not a message"
                )
            current = parent.message_type
        fields = _fields_of(current)
        info = fields.get(segment)
        if info is None:
            known = ", ".join(fields) or "no fields"
            raise FieldMaskError(
                f"unknown field {segment!r} in path {_show(path)} ({current.__name__} has: {known})"
            )
        steps.append(info)
    return steps


class FieldMaskPlan:
    """A validated, compiled mask for one message type; build once per request, apply to every item.

    Immutable after ``compile``, so one plan may be shared across items, tasks and threads.
    """

    __slots__ = ("_message_type", "_paths", "_root")

    def __init__(
        self,
        message_type: type[betterproto2.Message],
        paths: tuple[str, ...],
        root: _Node | None,
    ) -> None:
        """Internal: use ``compile``, which validates the paths."""
        self._message_type = message_type
        self._paths = paths
        self._root = root

    @classmethod
    def compile(
        cls, message_type: type[betterproto2.Message], paths: Sequence[str]
    ) -> FieldMaskPlan:
        """Validate every path against ``message_type`` and compile them into a pruning tree.

        Raises ``FieldMaskError`` for an empty path or segment, an unknown field, a path that
        continues below a non-message field (scalar, enum, repeated, map, Timestamp) or a path of
        more than ``MAX_PATH_SEGMENTS`` segments. Overlapping paths merge: 'a' with 'a.b' is 'a'.
        """
        if not _is_message_class(message_type):
            raise TypeError(f"expected a betterproto2 message class, got {message_type!r}")
        if isinstance(paths, str):  # a str is a Sequence[str]; 'abc' would become 'a', 'b', 'c'
            raise TypeError("paths must be a sequence of path strings, not a single string")
        builder = _Builder(message_type)
        for path in paths:
            if not isinstance(path, str):
                raise TypeError(f"field mask path must be a str, got {type(path).__name__}")
            builder.add(_resolve(message_type, path))
        frozen = tuple(paths)
        return cls(message_type, frozen, builder.freeze() if frozen else None)

    @property
    def message_type(self) -> type[betterproto2.Message]:
        """The message class the paths were validated against."""
        return self._message_type

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths as given (validated), for logging and tests."""
        return self._paths

    @property
    def is_everything(self) -> bool:
        """True for an empty mask: by FieldMask convention nothing is pruned.

        Callers that do not need an independent copy can skip ``apply`` when this is true.
        """
        return self._root is None

    def apply(self, message: M) -> M:
        """Return a NEW message of the same type with only the masked fields set.

        Unmasked fields keep their defaults ('' / 0 / enum 0 / None for sub-messages). A path ending
        at a sub-message keeps it whole; a path into an unset sub-message (or into a oneof member
        that is not the one set) leaves it unset. The input is never mutated and the result shares
        no mutable object with it; with an empty mask the result is a full copy.
        """
        if type(message) is not self._message_type:
            raise TypeError(
                f"this field mask was compiled for {self._message_type.__name__}, "
                f"not {type(message).__name__}"
            )
        if self._root is None:
            return _copy_message(message)
        return _prune(self._root, message)

    def __repr__(self) -> str:
        return f"FieldMaskPlan({self._message_type.__name__}, paths={list(self._paths)!r})"
