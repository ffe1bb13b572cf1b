"""A field sent with the wrong wire type is INVALID_ARGUMENT naming the field, on every method of
both services, for every field of every request, nested ones included: a Duration or Timestamp
sent as a varint, a fixed64 or a fixed32 (before: a varint Duration was accepted as the integer 5
and the call answered UNKNOWN; a fixed64 one said "KeyError: 'message'"), a string sent as a
varint, a number sent as bytes. WorkspacesService's requests carry no Duration or Timestamp; the
control plane's carry 25 (22 Durations, 3 Timestamps, nested ones included)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from grpc_helpers import ALICE
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hardening import _call_raw

from simulator import Simulator

ADMIN = "adm-wire"
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_WIRE = {"double": FIXED64, "fixed64": FIXED64, "sfixed64": FIXED64,
         "float": FIXED32, "fixed32": FIXED32, "sfixed32": FIXED32,
         "string": LEN, "bytes": LEN, "message": LEN, "map": LEN}  # fmt: skip
_PAYLOAD = {VARINT: b"\x05", FIXED64: b"\0" * 8, LEN: b"\x01x", FIXED32: b"\0" * 4}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _wrong_fields(message_type: Any, depth: int = 0) -> Iterator[tuple[str, str, bytes]]:
    """(dotted field path, the field's type, bytes of a request with that field mistyped)."""
    meta = message_type._betterproto
    for name, field in meta.meta_by_field_name.items():
        kind = field.proto_type
        right = _WIRE.get(kind, VARINT)
        label = field.unwrap().__name__ if field.unwrap is not None else kind
        wrong = {VARINT, FIXED64, LEN, FIXED32} - {right}
        if field.repeated and right != LEN:
            wrong.discard(LEN)  # packed: bytes are right too
        for wire in sorted(wrong):
            yield name, label, _tag(field.number, wire) + _PAYLOAD[wire]
        if kind == "message" and field.unwrap is None and field.map_meta is None and depth < 3:
            inner_type = meta.cls_by_field[name]
            for path, inner_label, inner in _wrong_fields(inner_type, depth + 1):
                yield (f"{name}.{path}", inner_label,
                       _tag(field.number, LEN) + _varint(len(inner)) + inner)  # fmt: skip


async def test_every_field_sent_with_the_wrong_wire_type_is_invalid_argument() -> None:
    sim = Simulator(seed=6, users={"alice": ALICE}, admin_token=ADMIN)
    before = json.dumps(sim.export_state(), sort_keys=True)
    tried: dict[str, int] = {}
    async with sim.channel() as channel:
        for service in sim.services():
            for path, handler in service.__mapping__().items():
                if not path.startswith(("/gitpod.v1.", "/gitpod.simulator.v1.")):
                    continue
                token = ADMIN if "/gitpod.simulator.v1." in path else ALICE
                for field, label, payload in _wrong_fields(handler.request_type):
                    try:
                        await _call_raw(channel, path, handler, payload, token)
                    except GRPCError as exc:
                        where = (path, field, label, payload)
                        assert exc.status is Status.INVALID_ARGUMENT, (*where, exc.message)
                        assert "malformed" in (exc.message or ""), (*where, exc.message)
                        assert field.rsplit(".", 1)[-1].rstrip("_") in (exc.message or ""), (
                            *where,
                            exc.message,
                        )
                    else:
                        raise AssertionError(f"{path}: {field} ({label}) mistyped was accepted")
                    tried[label] = tried.get(label, 0) + 1
    assert tried["Duration"] >= 3 * 21 and tried["Timestamp"] >= 3 * 3, tried
    assert len(tried) >= 8, tried
    assert json.dumps(sim.export_state(), sort_keys=True) == before  # nothing changed


async def test_a_field_this_server_does_not_know_is_accepted_and_journaled_as_sent() -> None:
    """A newer client's extra field (number 99) is ignored, as protobuf requires; the request the
    journal keeps is the bytes that came, not a re-encoding that would drop it. A known field in
    the same request with the wrong wire type is still refused (the fast path of the type check
    only applies when every field was known)."""
    from simulator._proto.gitpod import v1 as pb

    sim = Simulator(seed=6, users={"alice": ALICE})
    path = "/gitpod.v1.WorkspacesService/CreateAndStartWorkspace"
    known = bytes(pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/r"))
    extra = known + _tag(99, VARINT) + _varint(7)
    async with sim.channel() as channel:
        handler = sim.service.__mapping__()[path]
        reply = await _call_raw(channel, path, handler, extra, ALICE)
        assert reply.workspace_id
        entry = [e for e in sim.journal.read() if getattr(e, "method", "") == path][-1]
        assert entry.kept == extra
        number = pb.CreateAndStartWorkspaceRequest._betterproto.meta_by_field_name["context_url"]
        mistyped = extra + _tag(number.number, VARINT) + b"\x05"  # a string as a varint
        try:
            await _call_raw(channel, path, handler, mistyped, ALICE)
        except GRPCError as exc:
            assert exc.status is Status.INVALID_ARGUMENT and "context_url" in (exc.message or "")
        else:
            raise AssertionError("a string sent as a varint was accepted")


def _request_types() -> list[Any]:
    sim = Simulator(seed=6)
    return sorted(
        {
            handler.request_type
            for service in sim.api_services()
            for handler in service.__mapping__().values()
        },
        key=lambda t: t.__name__,
    )


_VARINTS = st.integers(0, 2**64 - 1) | st.integers(0, 300)
_VALUES = {
    VARINT: _VARINTS.map(_varint),
    FIXED64: st.binary(min_size=8, max_size=8),
    FIXED32: st.binary(min_size=4, max_size=4),
    LEN: st.text(max_size=12).map(lambda t: t.encode()).map(lambda b: _varint(len(b)) + b),
}


@st.composite
def _wire_messages(draw: st.DrawFn) -> tuple[Any, bytes]:
    """A request type and bytes of it: its scalar fields (any of them, repeated, in any order,
    with any value of the right wire type, overlong varints too) and now and then a nested
    message left empty (which betterproto2 parses)."""
    message_type = draw(st.sampled_from(_request_types()))
    fields = list(message_type._betterproto.meta_by_field_name.values())
    data = b""
    for _ in range(draw(st.integers(0, 6))):
        if not fields:
            break
        field = draw(st.sampled_from(fields))
        if field.proto_type == "message":
            data += _tag(field.number, LEN) + b"\x00"
            continue
        wire = VARINT if field.repeated else _WIRE.get(field.proto_type, VARINT)
        payload = draw(_VALUES[wire])
        if wire == VARINT and draw(st.booleans()):
            payload = payload[:-1] + bytes([payload[-1] | 0x80]) + b"\x00"  # overlong
        data += _tag(field.number, wire) + payload
    return message_type, data


@settings(max_examples=400, deadline=None)
@given(_wire_messages())
def test_requests_decode_as_betterproto2_parses_them(case: tuple[Any, bytes]) -> None:
    """What the codec makes of a valid request (built from Google's parse when every field sent
    is a scalar) is what betterproto2's own parser makes of the same bytes."""
    from simulator.server.codec import SimCodec

    message_type, data = case
    try:
        decoded = SimCodec().decode(data, message_type)
    except GRPCError as exc:
        assert exc.status is Status.INVALID_ARGUMENT  # e.g. a string that is not UTF-8
        return
    expected = message_type.FromString(data)
    assert decoded == expected
    assert bytes(decoded) == bytes(expected)
    assert repr(decoded) == repr(expected)
