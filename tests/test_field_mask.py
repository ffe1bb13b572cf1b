"""Tests for simulator.server.field_mask: pruning ListWorkspaces items to a FieldMask.

Why: the mask is client input, so validation errors must be precise, and pruning must never leak
unmasked data nor mutate the shared, cached messages the simulator keeps.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import betterproto2
import pytest

from simulator._proto.gitpod import v1 as pb
from simulator._proto.google import protobuf as wkt
from simulator.server.field_mask import MAX_PATH_SEGMENTS, FieldMaskError, FieldMaskPlan

Item = pb.ListWorkspacesResponseWorkspaceAndInstance

CREATED_AT = datetime(2024, 5, 17, 9, 30, 12, 345678, tzinfo=UTC)
FIRST_ACTIVITY = datetime(2024, 5, 17, 9, 31, 0, tzinfo=UTC)


def make_item(context: pb.WorkspaceContext | None = None) -> Item:
    """A realistic list item: workspace with a Git context, running instance with conditions."""
    if context is None:
        context = pb.WorkspaceContext(
            context_url="https://github.com/gitpod-io/empty",
            git=pb.WorkspaceContextGit(
                normalized_context_url="https://github.com/gitpod-io/empty",
                commit="4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
            ),
        )
    return Item(
        result=pb.Workspace(
            workspace_id="gitpodio-empty-abc123",
            owner_id="user-1",
            project_id="project-7",
            context=context,
            description="gitpod-io/empty - main",
        ),
        last_active_instances=pb.WorkspaceInstance(
            instance_id="inst-42",
            workspace_id="gitpodio-empty-abc123",
            created_at=CREATED_AT,
            status=pb.WorkspaceInstanceStatus(
                status_version=7,
                phase=pb.WorkspaceInstanceStatusPhase.RUNNING,
                conditions=pb.WorkspaceInstanceStatusConditions(
                    failed="",
                    timeout="",
                    first_user_activity=FIRST_ACTIVITY,
                    stopped_by_request=False,
                ),
                message="up and running",
                url="https://gitpodio-empty-abc123.ws.gitpod.example",
                admission=pb.AdmissionLevel.OWNER_ONLY,
            ),
        ),
    )


def snapshot_context() -> pb.WorkspaceContext:
    """A context whose ``details`` oneof is the snapshot member."""
    return pb.WorkspaceContext(
        context_url="snapshot/snap-9",
        snapshot=pb.WorkspaceContextSnapshot(snapshot_id="snap-9"),
    )


def prune(paths: list[str], item: Item | None = None) -> Item:
    """Compile ``paths`` for the list item type and apply them to ``item`` (default: make_item)."""
    return FieldMaskPlan.compile(Item, paths).apply(item if item is not None else make_item())


def assert_round_trips(message: betterproto2.Message) -> None:
    """The pruned message serialises and parses back to an equal message."""
    data = bytes(message)
    parsed = type(message).parse(data)
    assert parsed == message
    assert bytes(parsed) == data
    assert type(message).FromString(data) == message


# --- empty mask ------------------------------------------------------------------------------


def test_empty_mask_keeps_everything_bytes_identical() -> None:
    item = make_item()
    plan = FieldMaskPlan.compile(Item, [])
    assert plan.is_everything
    out = plan.apply(item)
    assert out is not item
    assert out == item
    assert bytes(out) == bytes(item)
    assert_round_trips(out)


def test_empty_mask_result_is_independent_of_input() -> None:
    item = make_item()
    out = FieldMaskPlan.compile(Item, []).apply(item)
    assert out.result is not item.result
    assert out.last_active_instances is not item.last_active_instances
    assert out.result is not None and out.result.context is not None
    out.result.context.context_url = "changed"
    assert item.result is not None and item.result.context is not None
    assert item.result.context.context_url == "https://github.com/gitpod-io/empty"


def test_empty_mask_keeps_unknown_fields() -> None:
    item = make_item()
    item._unknown_fields = b"\xf8\x01\x05"  # field 31, varint 5: from a newer server
    out = FieldMaskPlan.compile(Item, []).apply(item)
    assert bytes(out) == bytes(item)


def test_non_empty_mask_is_not_everything() -> None:
    assert not FieldMaskPlan.compile(Item, ["result"]).is_everything


# --- pruning ---------------------------------------------------------------------------------


def test_single_scalar_path_keeps_only_that_field() -> None:
    out = prune(["result.workspace_id"])
    assert out == Item(result=pb.Workspace(workspace_id="gitpodio-empty-abc123"))
    assert out.last_active_instances is None
    assert out.result is not None
    assert out.result.owner_id == ""
    assert out.result.context is None
    assert_round_trips(out)


def test_nested_enum_path_keeps_only_phase() -> None:
    out = prune(["last_active_instances.status.phase"])
    assert out.result is None
    inst = out.last_active_instances
    assert inst is not None
    assert inst.instance_id == ""
    assert inst.workspace_id == ""
    assert inst.created_at is None
    assert inst.status == pb.WorkspaceInstanceStatus(phase=pb.WorkspaceInstanceStatusPhase.RUNNING)
    assert inst.status is not None
    assert inst.status.url == ""
    assert inst.status.status_version == 0
    assert inst.status.conditions is None
    assert inst.status.admission == pb.AdmissionLevel.UNSPECIFIED
    assert_round_trips(out)


def test_path_into_oneof_member_keeps_only_that_leaf() -> None:
    out = prune(["result.context.git.normalized_context_url"])
    assert out == Item(
        result=pb.Workspace(
            context=pb.WorkspaceContext(
                git=pb.WorkspaceContextGit(
                    normalized_context_url="https://github.com/gitpod-io/empty"
                )
            )
        )
    )
    assert_round_trips(out)


def test_sub_message_path_keeps_the_whole_sub_message() -> None:
    item = make_item()
    out = prune(["last_active_instances.status"], item)
    assert out.result is None
    assert out.last_active_instances is not None
    assert item.last_active_instances is not None
    assert out.last_active_instances.status == item.last_active_instances.status
    assert out.last_active_instances.status is not item.last_active_instances.status
    assert out.last_active_instances.instance_id == ""
    assert_round_trips(out)


def test_timestamp_fields_are_kept_as_leaves() -> None:
    out = prune(
        [
            "last_active_instances.created_at",
            "last_active_instances.status.conditions.first_user_activity",
        ]
    )
    inst = out.last_active_instances
    assert inst is not None
    assert inst.created_at == CREATED_AT
    assert inst.status is not None and inst.status.conditions is not None
    assert inst.status.conditions.first_user_activity == FIRST_ACTIVITY
    assert inst.status.conditions.stopped_by_request is None
    assert inst.status.phase == pb.WorkspaceInstanceStatusPhase.UNSPECIFIED
    parsed = Item.parse(bytes(out))
    assert parsed.last_active_instances is not None
    assert parsed.last_active_instances.created_at == CREATED_AT


def test_optional_scalar_false_is_kept_as_set() -> None:
    out = prune(["last_active_instances.status.conditions.stopped_by_request"])
    assert out.last_active_instances is not None
    assert out.last_active_instances.status is not None
    conditions = out.last_active_instances.status.conditions
    assert conditions == pb.WorkspaceInstanceStatusConditions(stopped_by_request=False)
    assert_round_trips(out)


def test_several_paths_across_both_halves() -> None:
    out = prune(
        [
            "result.workspace_id",
            "result.description",
            "last_active_instances.instance_id",
            "last_active_instances.status.url",
        ]
    )
    assert out == Item(
        result=pb.Workspace(
            workspace_id="gitpodio-empty-abc123", description="gitpod-io/empty - main"
        ),
        last_active_instances=pb.WorkspaceInstance(
            instance_id="inst-42",
            status=pb.WorkspaceInstanceStatus(
                url="https://gitpodio-empty-abc123.ws.gitpod.example"
            ),
        ),
    )
    assert_round_trips(out)


def test_path_into_unset_sub_message_leaves_it_unset() -> None:
    item = make_item()
    item.last_active_instances = None
    out = prune(["last_active_instances.status.phase", "result.workspace_id"], item)
    assert out.last_active_instances is None
    assert out.result == pb.Workspace(workspace_id="gitpodio-empty-abc123")
    assert_round_trips(out)


def test_naming_an_unset_sub_message_leaves_it_unset() -> None:
    item = make_item()
    item.last_active_instances = None
    out = prune(["last_active_instances"], item)
    assert out == Item()
    assert bytes(out) == b""


def test_present_but_empty_parent_stays_present() -> None:
    """Like protobuf's FieldMaskUtil: a set parent stays set even if the kept leaf is default."""
    item = make_item()
    assert item.last_active_instances is not None and item.last_active_instances.status
    item.last_active_instances.status.phase = pb.WorkspaceInstanceStatusPhase.UNSPECIFIED
    out = prune(["last_active_instances.status.phase"], item)
    assert out.last_active_instances is not None
    assert out.last_active_instances.status == pb.WorkspaceInstanceStatus()
    assert_round_trips(out)


# --- overlapping paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "paths",
    [
        ["result", "result.owner_id"],
        ["result.owner_id", "result"],
        ["result.context.git.commit", "result", "result.context"],
        ["result", "result"],
    ],
)
def test_overlapping_paths_keep_the_widest(paths: list[str]) -> None:
    item = make_item()
    out = prune(paths, item)
    assert out.result == item.result
    assert out.last_active_instances is None
    assert_round_trips(out)


def test_overlap_at_inner_level() -> None:
    item = make_item()
    out = prune(
        ["last_active_instances.status.conditions.failed", "last_active_instances.status"], item
    )
    assert item.last_active_instances is not None
    assert out.last_active_instances == pb.WorkspaceInstance(
        status=item.last_active_instances.status
    )


def test_duplicate_leaf_paths() -> None:
    out = prune(["result.owner_id", "result.owner_id"])
    assert out == Item(result=pb.Workspace(owner_id="user-1"))


# --- oneof -----------------------------------------------------------------------------------


def test_oneof_member_kept_when_it_is_the_set_one() -> None:
    item = make_item()
    out = prune(["result.context.git"], item)
    assert out.result is not None and out.result.context is not None
    assert betterproto2.which_one_of(out.result.context, "details") == (
        "git",
        pb.WorkspaceContextGit(
            normalized_context_url="https://github.com/gitpod-io/empty",
            commit="4f3c2a1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
        ),
    )
    assert out.result.context.context_url == ""
    assert_round_trips(out)


def test_oneof_member_not_set_leaves_details_unset() -> None:
    out = prune(["result.context.git"], make_item(snapshot_context()))
    assert out.result is not None and out.result.context is not None
    assert betterproto2.which_one_of(out.result.context, "details") == ("", None)
    assert out.result.context == pb.WorkspaceContext()
    assert_round_trips(out)


def test_path_into_unset_oneof_member_leaves_details_unset() -> None:
    out = prune(
        ["result.context.git.commit", "result.context.context_url"],
        make_item(snapshot_context()),
    )
    assert out.result is not None
    assert out.result.context == pb.WorkspaceContext(context_url="snapshot/snap-9")
    assert out.result.context is not None
    assert betterproto2.which_one_of(out.result.context, "details") == ("", None)
    assert_round_trips(out)


def test_all_oneof_members_named_keeps_the_set_one() -> None:
    out = prune(
        ["result.context.git", "result.context.prebuild", "result.context.snapshot"],
        make_item(snapshot_context()),
    )
    assert out.result is not None and out.result.context is not None
    assert betterproto2.which_one_of(out.result.context, "details") == (
        "snapshot",
        pb.WorkspaceContextSnapshot(snapshot_id="snap-9"),
    )
    assert_round_trips(out)


def test_prebuild_member_nested_message() -> None:
    context = pb.WorkspaceContext(
        context_url="https://github.com/gitpod-io/empty",
        prebuild=pb.WorkspaceContextPrebuild(
            original_context=pb.WorkspaceContextGit(
                normalized_context_url="https://github.com/gitpod-io/empty", commit="abc"
            ),
            prebuild_id="pb-1",
        ),
    )
    out = prune(["result.context.prebuild.original_context.commit"], make_item(context))
    assert out.result is not None
    assert out.result.context == pb.WorkspaceContext(
        prebuild=pb.WorkspaceContextPrebuild(original_context=pb.WorkspaceContextGit(commit="abc"))
    )
    assert_round_trips(out)


# --- errors ----------------------------------------------------------------------------------


def compile_error(paths: list[str]) -> str:
    """Compile ``paths`` expecting a FieldMaskError; return its message."""
    with pytest.raises(FieldMaskError) as info:
        FieldMaskPlan.compile(Item, paths)
    return str(info.value)


def test_field_mask_error_is_a_value_error() -> None:
    assert issubclass(FieldMaskError, ValueError)


def test_unknown_field_names_path_and_alternatives() -> None:
    assert compile_error(["result.foo"]) == (
        "unknown field 'foo' in path 'result.foo' "
        "(Workspace has: workspace_id, owner_id, project_id, context, description)"
    )


def test_unknown_top_level_field() -> None:
    assert compile_error(["workspace_id"]) == (
        "unknown field 'workspace_id' in path 'workspace_id' "
        "(ListWorkspacesResponseWorkspaceAndInstance has: result, last_active_instances)"
    )


def test_unknown_deep_field() -> None:
    message = compile_error(["last_active_instances.status.conditions.nope"])
    assert "unknown field 'nope'" in message
    assert "'last_active_instances.status.conditions.nope'" in message
    assert (
        "WorkspaceInstanceStatusConditions has: failed, timeout, first_user_activity, "
        "stopped_by_request" in message
    )


def test_camel_case_is_unknown() -> None:
    message = compile_error(["result.workspaceId"])
    assert "unknown field 'workspaceId'" in message
    assert "workspace_id" in message


def test_oneof_group_name_is_not_a_field() -> None:
    message = compile_error(["result.context.details"])
    assert "unknown field 'details'" in message
    assert "context_url, git, prebuild, snapshot" in message


def test_private_attribute_is_not_a_field() -> None:
    assert "unknown field '_unknown_fields'" in compile_error(["result._unknown_fields"])


def test_empty_path() -> None:
    message = compile_error(["result.workspace_id", ""])
    assert message == "empty path in field mask (a path must name at least one field)"


@pytest.mark.parametrize("path", ["result..workspace_id", ".result", "result.", "."])
def test_empty_segment(path: str) -> None:
    message = compile_error([path])
    assert message.startswith(f"empty segment in path {path!r}")


def test_through_string_field() -> None:
    assert compile_error(["result.workspace_id.x"]) == (
        "cannot select 'x' in path 'result.workspace_id.x': "
        "Workspace.workspace_id is a string field, not a message"
    )


def test_through_enum_field() -> None:
    assert compile_error(["last_active_instances.status.phase.value"]) == (
        "cannot select 'value' in path 'last_active_instances.status.phase.value': "
        "WorkspaceInstanceStatus.phase is an enum field, not a message"
    )


def test_through_uint64_field() -> None:
    message = compile_error(["last_active_instances.status.status_version.x"])
    assert "WorkspaceInstanceStatus.status_version is a uint64 field, not a message" in message


def test_through_timestamp_field() -> None:
    assert compile_error(["last_active_instances.created_at.seconds"]) == (
        "cannot select 'seconds' in path 'last_active_instances.created_at.seconds': "
        "WorkspaceInstance.created_at is a Timestamp field (treated as a single value), "
        "not a message"
    )


def test_through_repeated_field() -> None:
    with pytest.raises(FieldMaskError) as info:
        FieldMaskPlan.compile(pb.ListWorkspacesResponse, ["result.result.workspace_id"])
    assert str(info.value) == (
        "cannot select 'result' in path 'result.result.workspace_id': "
        "ListWorkspacesResponse.result is a repeated field (a mask can only name it as a whole), "
        "not a message"
    )


def test_repeated_field_as_last_segment_is_kept_whole_and_copied() -> None:
    item = make_item()
    response = pb.ListWorkspacesResponse(next_page_token="tok", result=[item, make_item()])
    out = FieldMaskPlan.compile(pb.ListWorkspacesResponse, ["result"]).apply(response)
    assert out == pb.ListWorkspacesResponse(result=response.result)
    assert out.result is not response.result
    assert out.result[0] is not item
    assert_round_trips(out)


def test_max_depth_is_accepted_by_the_counter() -> None:
    # Real messages here are only 5 deep, so a 16-segment path fails as unknown, not as too deep.
    path = ".".join(["result"] + ["x"] * (MAX_PATH_SEGMENTS - 1))
    assert "unknown field 'x'" in compile_error([path])


def test_too_many_segments() -> None:
    path = ".".join(["result"] * (MAX_PATH_SEGMENTS + 1))
    assert compile_error([path]) == (
        f"path {path!r} has {MAX_PATH_SEGMENTS + 1} segments; "
        f"at most {MAX_PATH_SEGMENTS} are allowed"
    )


def test_hostile_long_path_is_rejected_cheaply_with_short_message() -> None:
    path = "a." * 500_000 + "a"
    message = compile_error([path])
    assert "has 500001 segments; at most 16 are allowed" in message
    assert len(message) < 300


def test_one_bad_path_fails_the_whole_mask() -> None:
    message = compile_error(["result.workspace_id", "result", "last_active_instances.nope"])
    assert "'last_active_instances.nope'" in message


def test_a_wider_path_does_not_hide_an_invalid_narrower_one() -> None:
    assert "unknown field 'foo'" in compile_error(["result", "result.foo"])


def test_single_string_instead_of_list_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        FieldMaskPlan.compile(Item, "result.workspace_id")


def test_non_message_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="betterproto2 message class"):
        FieldMaskPlan.compile(str, ["x"])  # type: ignore[arg-type]


def test_apply_to_wrong_type_is_a_type_error() -> None:
    plan = FieldMaskPlan.compile(Item, ["result"])
    with pytest.raises(TypeError, match="compiled for ListWorkspacesResponseWorkspaceAndInstance"):
        plan.apply(pb.Workspace())


# --- no mutation, reuse ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "paths",
    [
        [],
        ["result.workspace_id"],
        ["last_active_instances.status.phase"],
        ["result", "last_active_instances.status"],
        ["result.context.git.normalized_context_url", "last_active_instances.created_at"],
    ],
)
def test_input_is_not_mutated(paths: list[str]) -> None:
    item = make_item()
    before_bytes = bytes(item)
    before = copy.deepcopy(item)
    result_obj, instance_obj = item.result, item.last_active_instances
    out = prune(paths, item)
    assert bytes(item) == before_bytes
    assert item == before
    assert item.result is result_obj
    assert item.last_active_instances is instance_obj
    # Mutating the output must not reach the input either.
    if out.result is not None:
        out.result.workspace_id = "mutated"
        if out.result.context is not None:
            out.result.context.context_url = "mutated"
    if out.last_active_instances is not None and out.last_active_instances.status is not None:
        out.last_active_instances.status.url = "mutated"
    assert bytes(item) == before_bytes


def test_plan_is_reusable_across_items() -> None:
    plan = FieldMaskPlan.compile(
        Item, ["result.workspace_id", "last_active_instances.status.phase"]
    )
    first = make_item()
    second = make_item(snapshot_context())
    assert second.result is not None and second.last_active_instances is not None
    second.result.workspace_id = "other-ws"
    assert second.last_active_instances.status is not None
    second.last_active_instances.status.phase = pb.WorkspaceInstanceStatusPhase.STOPPED
    outs = [plan.apply(m) for m in (first, second, first)]
    assert outs[0] == outs[2]
    assert outs[0] is not outs[2]
    assert outs[1].result == pb.Workspace(workspace_id="other-ws")
    assert outs[1].last_active_instances == pb.WorkspaceInstance(
        status=pb.WorkspaceInstanceStatus(phase=pb.WorkspaceInstanceStatusPhase.STOPPED)
    )


def test_paths_and_repr() -> None:
    plan = FieldMaskPlan.compile(Item, ("result.owner_id", "result"))
    assert plan.paths == ("result.owner_id", "result")
    assert plan.message_type is Item
    assert "result.owner_id" in repr(plan)


def test_pruned_item_parses_with_the_request_field_mask_message() -> None:
    """End to end with a wire FieldMask, as ListWorkspaces receives it."""
    request = pb.ListWorkspacesRequest.parse(
        bytes(
            pb.ListWorkspacesRequest(
                field_mask=wkt.FieldMask(
                    paths=["result.workspace_id", "last_active_instances.status.phase"]
                )
            )
        )
    )
    assert request.field_mask is not None
    plan = FieldMaskPlan.compile(Item, request.field_mask.paths)
    response = pb.ListWorkspacesResponse(result=[plan.apply(make_item())])
    parsed = pb.ListWorkspacesResponse.parse(bytes(response))
    assert parsed.result[0].result == pb.Workspace(workspace_id="gitpodio-empty-abc123")
    assert parsed.result[0].last_active_instances == pb.WorkspaceInstance(
        status=pb.WorkspaceInstanceStatus(phase=pb.WorkspaceInstanceStatusPhase.RUNNING)
    )
