"""A protobuf codec that lets a handler send bytes it encoded earlier, and refuses bad input.

Why: one status change goes to many listeners. Encoding it once and handing every stream the same
bytes keeps fan-out bound by the transport, not by betterproto2's encoder (STACK.md).

Decoding is strict: betterproto2's parser accepts truncated or mistyped input silently (or
crashes on it), so each request is first parsed by Google's protobuf against the committed
descriptors; anything that is not a valid message of the expected type is INVALID_ARGUMENT with
the parser's reason, never UNKNOWN. A request whose fields (as sent) are all scalars is then built
from Google's parse instead of being parsed a second time by betterproto2 (most requests: an id
and perhaps a token; 1.5 us instead of 7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

from simulator.server.deferred import deferred_module

if TYPE_CHECKING:
    import betterproto2

    from simulator._proto import message_pool
else:  # loaded by the first request decoded (start-up time: see deferred.py)
    betterproto2 = deferred_module("betterproto2")
    message_pool = deferred_module("simulator._proto.message_pool")

_URL_PREFIX = "type.googleapis.com/"

WIRE_BYTES = "_gitpod_sim_wire"
"""The attribute a decoded request keeps its bytes in, as they came (the journal keeps those
instead of encoding the message again)."""


def _every_field_known(parsed: Any) -> bool:
    """No field anywhere in Google's parse of the request was unknown to it. A known field sent
    with the wrong wire type is kept as an unknown one, and only such a field can reach
    betterproto2 with the wrong Python type: without any, the type check has nothing to find."""
    size = parsed.ByteSize()
    parsed.DiscardUnknownFields()
    return bool(parsed.ByteSize() == size)


class Preencoded:
    """A message already serialised; :class:`SimCodec` sends ``data`` as is."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Preencoded({len(self.data)} bytes)"


class SimCodec(ProtoCodec):
    """grpclib's ProtoCodec (betterproto2 messages speak its protocol) plus :class:`Preencoded`."""

    # One table for every codec of the process (every world has a codec; message classes and
    # descriptors are the process's): a new world's first calls find them made.
    _checkers: ClassVar[dict[type[Any], Any]] = {}
    _scalars: ClassVar[dict[type[Any], dict[int, str] | None]] = {}
    """Per message type: field number -> attribute, for its scalar fields (see _from_parse);
    None for a type that always takes betterproto2's parser."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is Preencoded:
            return message.data
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        checker = self._checker(message_type)
        name = message_type.__name__
        every_field_known = False
        if checker is not None:
            try:
                parsed = checker.FromString(data)
            except Exception as exc:  # the parser's own DecodeError and friends
                raise GRPCError(
                    Status.INVALID_ARGUMENT, f"malformed {name}: {exc or type(exc).__name__}"
                ) from None
            every_field_known = _every_field_known(parsed)
            scalars = self._scalars[message_type]
            if every_field_known and scalars is not None:
                message = _from_parse(message_type, parsed, scalars)
                if message is not None:
                    setattr(message, WIRE_BYTES, bytes(data))
                    return message
        try:
            message = message_type.FromString(data)
            if isinstance(message, betterproto2.Message):
                if not every_field_known:
                    _check_types(message, name)
                setattr(message, WIRE_BYTES, bytes(data))
        except GRPCError:
            raise
        except Exception as exc:
            wrong = _wrong_wire_type(checker, data)
            reason = wrong or f"{type(exc).__name__}: {exc}"
            raise GRPCError(Status.INVALID_ARGUMENT, f"malformed {name}: {reason}") from None
        return message

    def _checker(self, message_type: Any) -> Any:
        """A Google message class with the same descriptor, built once per type (lazily: the
        protobuf runtime is loaded only when the first request arrives)."""
        if message_type in self._checkers:
            return self._checkers[message_type]
        checker = None
        url = (
            message_pool.default_message_pool.type_to_url.get(message_type)
            if isinstance(message_type, type) and issubclass(message_type, betterproto2.Message)
            else None
        )
        if url is not None:
            from simulator.server.reflection import message_class

            try:
                checker = message_class(url.removeprefix(_URL_PREFIX))
            except KeyError:
                checker = None
        self._checkers[message_type] = checker
        if checker is not None:
            self._scalars[message_type] = _scalar_fields(message_type)
        return checker


_SCALAR_TYPES = frozenset(
    {
        "string", "bytes", "bool", "double", "float", "int32", "int64", "uint32", "uint64",
        "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64",
    }
)  # fmt: skip
"""Proto types whose value Google's parser gives as betterproto2 would (enums are betterproto2's
own enum class, messages its own message classes: those fields take betterproto2's parser)."""


def _scalar_fields(message_type: Any) -> dict[int, str] | None:
    """Field number -> attribute name, for the singular scalar fields of ``message_type``; None
    for a type with a oneof: betterproto2 keeps every member the bytes set, where Google's
    parser keeps the last one only, and the answer must stay what betterproto2 makes of it."""
    meta = message_type._betterproto
    if any(field.group is not None for field in meta.meta_by_field_name.values()):
        return None
    return {
        field.number: name
        for name, field in meta.meta_by_field_name.items()
        if field.proto_type in _SCALAR_TYPES and not field.repeated and field.map_meta is None
    }


def _from_parse(message_type: Any, parsed: Any, scalars: dict[int, str]) -> Any:
    """The betterproto2 message for Google's ``parsed`` (every field known to it), when every
    field sent is a singular scalar; None otherwise (betterproto2 parses it then). The values are
    Google's, which for these types are what betterproto2's parser makes of the same bytes
    (tests/test_wire_types.py checks it on random messages)."""
    values = {}
    for field, value in parsed.ListFields():
        name = scalars.get(field.number)
        if name is None:
            return None
        values[name] = value
    return message_type(**values)


_SCALARS: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "bytes": bytes,
    "bool": bool,
    "float": float,  # a varint sent for a double arrives as an int
    "double": float,
}


def _wrong_wire_type(checker: Any, data: bytes) -> str:
    """Which known field came with the wrong wire type (Google's parser keeps such a field as
    an unknown one), for the error message; "" when none did. Only on the error path."""
    if checker is None:
        return ""
    from google.protobuf.unknown_fields import UnknownFieldSet  # type: ignore[import-untyped]

    def find(message: Any, path: str, depth: int) -> str:
        fields = message.DESCRIPTOR.fields_by_number
        for unknown in UnknownFieldSet(message):
            if unknown.field_number in fields:
                field = fields[unknown.field_number]
                return f"field {path + field.name!r} came with the wrong wire type"
        if depth < 32:
            for field, value in message.ListFields():
                if field.message_type is None or field.message_type.GetOptions().map_entry:
                    continue
                for item in value if field.is_repeated else [value]:
                    if found := find(item, f"{path}{field.name}.", depth + 1):
                        return found
        return ""

    try:
        return find(checker.FromString(data), "", 0)
    except Exception:
        return ""


_WRAPPED: dict[Any, type] = {}
"""The Python type each unwrapped well-known message decodes to (Duration: timedelta)."""


def _wrapped_type(unwrap: Any) -> type:
    kind = _WRAPPED.get(unwrap)
    if kind is None:
        kind = _WRAPPED[unwrap] = type(unwrap()().to_wrapped())
    return kind


def _check_types(message: Any, where: str, depth: int = 0) -> None:
    """betterproto2 stores whatever the wire said, so a varint sent for a string field arrives
    as an int: refuse a value whose Python type does not fit its field."""
    if depth > 32:
        raise GRPCError(Status.INVALID_ARGUMENT, f"malformed {where}: nested too deeply")
    meta = type(message)._betterproto
    for field_name, field in meta.meta_by_field_name.items():
        value = getattr(message, field_name, None)
        if value is None:
            if field.proto_type != "message" and not field.optional and field.group is None:
                _refuse(where, field_name, field.proto_type)  # e.g. a group sent for a string
            continue
        values = value if field.repeated and isinstance(value, list) else [value]
        for item in values:
            kind = field.proto_type
            if kind == "message" and field.unwrap is not None:
                # a Duration or Timestamp sent as a varint arrives as a bare int
                if not isinstance(item, _wrapped_type(field.unwrap)):
                    _refuse(where, field_name, field.unwrap().__name__)
            elif kind == "message" and field.map_meta is None:
                if not isinstance(item, betterproto2.Message):
                    _refuse(where, field_name, kind)
                _check_types(item, f"{where}.{field_name}", depth + 1)
            elif kind != "message" and not isinstance(item, _SCALARS.get(kind, int)):
                _refuse(where, field_name, kind)


def _refuse(where: str, field: str, kind: str) -> None:
    raise GRPCError(
        Status.INVALID_ARGUMENT, f"malformed {where}: field {field!r} is not a valid {kind}"
    )
