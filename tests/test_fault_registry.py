"""The fault registry is the one source of fault names and parameters for every format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.errors import InvalidArgument
from simulator.core.faults import (
    FAULT_KINDS,
    FAULT_NAMES,
    Fault,
    FaultKind,
    ParamType,
    Target,
    effect_from_json,
    effect_to_json,
    kind_named,
    kind_of,
    status_name,
)
from simulator.core.transitions import Phase
from simulator.server.control_convert import effect_in, fault_out

README = Path(__file__).resolve().parent.parent / "README.md"

SAMPLE: dict[ParamType, object] = {
    ParamType.DURATION: 7_000_000,
    ParamType.OPTIONAL_DURATION: 9_000_000,
    ParamType.TEXT: "something broke",
    ParamType.LINES: ("E: one", "E: two"),
    ParamType.PHASE: Phase.CREATING,
    ParamType.METHOD: "GetWorkspace",
    ParamType.STREAM: "StopWorkspace",
    ParamType.CODE: "NOT_FOUND",
    ParamType.PROBABILITY: 0.25,
    ParamType.FLAG: False,
    ParamType.COUNT: 3,
}


def sample_effect(kind: FaultKind) -> object:
    return kind.build({p.name: SAMPLE[p.type] for p in kind.params})


@pytest.mark.parametrize("kind", FAULT_KINDS, ids=lambda k: k.name)
def test_every_kind_round_trips_through_json_and_protobuf(kind: FaultKind) -> None:
    effect = sample_effect(kind)
    assert kind_of(effect) is kind  # type: ignore[arg-type]
    assert effect_from_json(effect_to_json(effect)) == effect  # type: ignore[arg-type]
    spec = fault_out(Fault("fault-1", effect, Target.of(kind.default_target))).spec  # type: ignore[arg-type]
    assert spec is not None
    assert effect_in(spec) == (effect, kind.default_target)


@pytest.mark.parametrize("kind", FAULT_KINDS, ids=lambda k: k.name)
def test_the_protobuf_message_has_the_kind_and_its_parameters(kind: FaultKind) -> None:
    fields = {f.name for f in dataclasses.fields(spb.FaultSpec)}
    assert kind.proto_field in fields
    message = type(getattr(spb.FaultSpec(**{kind.proto_field: _message(kind)}), kind.proto_field))
    assert {p.name for p in kind.params} <= {f.name for f in dataclasses.fields(message)}


def _message(kind: FaultKind) -> object:
    return getattr(spb, kind.proto_field.title().replace("_", ""))()


def test_ctl_offers_exactly_the_registered_names() -> None:
    from simulator.ctl import ctl

    result = CliRunner().invoke(ctl, ["--target", "x:1", "--admin-token", "a", "fault", "--help"])
    assert result.exit_code == 0
    listed = result.output.split("{", 1)[1].split("}", 1)[0]
    assert "".join(listed.split()) == "|".join(FAULT_NAMES)
    for kind in FAULT_KINDS:
        for p in kind.params:
            assert p.option in result.output


def test_the_readme_names_every_kind_in_its_one_spelling() -> None:
    text = README.read_text()
    for name in FAULT_NAMES:
        assert f"`{name}`" in text, name
    for old in ("`stall`", "`stall_phase`:", "`rpc_error`", "`fail_image_build`"):
        assert old not in text


def test_unknown_names_and_parameters_are_refused_with_the_known_ones() -> None:
    with pytest.raises(InvalidArgument, match="unknown fault 'stall'; expected one of: "):
        kind_named("stall")
    with pytest.raises(InvalidArgument, match="no parameter reason; it takes: method, code"):
        kind_named("rpc-error").build({"reason": "x"})
    with pytest.raises(InvalidArgument, match="a rpc-latency fault needs latency"):
        kind_named("rpc-latency").build({"method": "GetWorkspace"})


@pytest.mark.parametrize(
    ("given", "name"),
    [("UNAVAILABLE", "UNAVAILABLE"), ("unavailable", "UNAVAILABLE"), (14, "UNAVAILABLE"),
     ("14", "UNAVAILABLE"), (5, "NOT_FOUND")],
)  # fmt: skip
def test_status_codes_by_name_or_number(given: str | int, name: str) -> None:
    assert status_name(given) == name


@pytest.mark.parametrize(
    ("given", "message"),
    [(0, "cannot be OK (0)"), ("OK", "cannot be OK (0)"), (17, "unknown gRPC status code 17"),
     ("NOPE", "unknown gRPC status 'NOPE'")],
)  # fmt: skip
def test_bad_status_codes(given: str | int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        status_name(given)
