"""``gitpod-sim ctl journal --follow`` follows until interrupted: the request carries no deadline.

A grpclib server stands in for the control service's FollowJournal: it records the deadline the
client sent (grpclib turns a ``grpc-timeout`` header into ``stream.deadline``) and ends the stream
after two entries, so the test needs no real 30 s wait to show the old bug (DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import asyncio
import json

import grpclib.const
import grpclib.server
from server_process import command

from simulator._proto.gitpod.simulator import v1 as spb

FOLLOW = "/gitpod.simulator.v1.SimulatorService/FollowJournal"


class _FakeFollow:
    def __init__(self) -> None:
        self.deadlines: list[object] = []
        self.requests: list[spb.FollowJournalRequest] = []

    async def follow(self, stream: grpclib.server.Stream[object, object]) -> None:
        request = await stream.recv_message()
        assert isinstance(request, spb.FollowJournalRequest)
        self.requests.append(request)
        self.deadlines.append(stream.deadline)
        for seq in (3, 4):
            await stream.send_message(spb.JournalEntry(seq=seq))

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            FOLLOW: grpclib.const.Handler(
                self.follow,
                grpclib.const.Cardinality.UNARY_STREAM,
                spb.FollowJournalRequest,
                spb.JournalEntry,
            )
        }


async def test_journal_follow_sends_no_deadline() -> None:
    fake = _FakeFollow()
    server = grpclib.server.Server([fake])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        proc = await asyncio.create_subprocess_exec(
            *command("ctl", "--target", f"127.0.0.1:{port}", "--admin-token", "adm"),
            *("journal", "--follow", "--from", "3"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        server.close()
        await server.wait_closed()
    assert proc.returncode == 0, err.decode()
    assert [json.loads(line)["seq"] for line in out.decode().splitlines()] == ["3", "4"]
    assert fake.requests == [spb.FollowJournalRequest(from_seq=3)]
    assert fake.deadlines == [None], "ctl journal --follow must not send a deadline"
