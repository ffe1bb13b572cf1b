"""One seed decides everything: the same seed and calls give byte-identical answers."""

from __future__ import annotations

from grpc_helpers import ALICE, BOB, collect, drive, stub_for

from simulator import Simulator
from simulator._proto.gitpod import v1 as pb


async def session(seed: int) -> list[bytes]:
    """A scripted client session; every answer's bytes, in order."""
    sim = Simulator(seed=seed, users={"alice": ALICE, "bob": BOB})
    out: list[bytes] = []
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
        created = []
        for i, stub in enumerate((alice, bob, alice, alice)):
            response = await stub.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url=f"https://github.com/org/repo{i % 2}")
            )
            out.append(bytes(response))
            created.append((stub, response.workspace_id))
            sim.advance("7s")
        for stub, wsid in created:
            active = await stub.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
            )
            out.append(bytes(active))
            out.append(
                bytes(await stub.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=wsid)))
            )
        stub, wsid = created[0]
        iid = (
            await stub.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
            )
        ).instance.instance_id
        sim.run_until_idle("3m")
        out += [bytes(m) for m in await collect(stub.listen_to_image_build_logs(
            pb.ListenToImageBuildLogsRequest(instance_id=iid)))]  # fmt: skip
        out += [bytes(m) for m in await drive(sim, collect(stub.stop_workspace(
            pb.StopWorkspaceRequest(workspace_id=wsid))))]  # fmt: skip
        out += [bytes(m) for m in await collect(stub.listen_to_workspace_instance(
            pb.ListenToWorkspaceInstanceRequest(instance_id=iid)))]  # fmt: skip
        restart = await stub.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid))
        out.append(bytes(restart))
        page = await alice.list_workspaces(
            pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=2))
        )
        out.append(bytes(page))
        out.append(
            bytes(
                await alice.list_workspaces(
                    pb.ListWorkspacesRequest(
                        pagination=pb.Pagination(page_size=2, page_token=page.next_page_token)
                    )
                )
            )
        )
    return out


async def test_same_seed_same_bytes() -> None:
    first = await session(42)
    second = await session(42)
    assert len(first) == len(second) > 20
    assert first == second


async def test_different_seed_different_ids() -> None:
    a = await session(1)
    b = await session(2)
    assert a[0] != b[0]  # the first workspace id already differs


def test_user_tokens_come_from_the_seed() -> None:
    a = Simulator(seed=9).add_user("dev").token
    b = Simulator(seed=9).add_user("dev").token
    c = Simulator(seed=10).add_user("dev").token
    assert a == b != c
