"""Start-up loads only what serving needs (issues 10 and 17): the message classes, Google's protobuf
(health, reflection, the codec's strict check), the HTTP gateway and the client side load with the
first call that needs them (``simulator/server/deferred.py``), RE2, anyio and the state codec with
their first use, and every call still answers as it did. Each check runs in a fresh interpreter, as
``tests/test_layers.py`` does for the core."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from simulator.server.convert import STOP_PAYLOAD

DEFERRED = (
    "betterproto2",
    "simulator._proto",
    "google.protobuf",
    "importlib.metadata",
    "dateutil",
    "aiohttp",
    "grpclib.client",
    "simulator.server.connect_gateway",
    "simulator.ctl",
    "simulator.scenario",
    "re2",  # with the first context pattern compiled
    "anyio",  # with the clock task, which a manual-clock world never runs
    "simulator.core.state",  # with the first state export or import
    "simulator.server.state_file",  # with --state
)
"""What a server must not have loaded when it says ``listening on``."""

_LOADED = f"""
def loaded():
    deferred = {DEFERRED!r}
    return sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in deferred))
"""


def _run(probe: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("PROBE "))
    found: dict[str, list[str]] = json.loads(line.removeprefix("PROBE "))
    return found


def test_serve_is_listening_before_any_deferred_module_loads() -> None:
    """``gitpod-sim serve`` itself (the command line, its exact path): when it prints
    ``listening on``, none of the deferred modules is loaded."""
    probe = f"""
import builtins, json, os, signal, sys
{_LOADED}
real_print = builtins.print
def spy(*args, **kwargs):
    real_print(*args, **kwargs)
    if args and str(args[0]).startswith("listening on"):
        real_print("PROBE " + json.dumps({{"loaded": loaded()}}), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the server's own clean shutdown
builtins.print = spy
from simulator.cli import main
sys.argv = ["gitpod-sim", "serve", "--port", "0", "--clock", "manual", "--quiet"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
"""
    assert _run(probe) == {"loaded": []}


def test_the_first_calls_load_what_they_need_and_answer() -> None:
    """A fresh server answers its first health check, API call and control call (raw bytes
    from a client that loads nothing of the schema): the deferred modules load then, not before."""
    probe = f"""
import asyncio, json, sys
from simulator import Simulator
{_LOADED}

class Raw:
    __content_subtype__ = "proto"
    def encode(self, message, message_type):
        return message
    def decode(self, data, message_type):
        return data

async def main():
    sim = Simulator(seed=1, users={{"alice": "alice-token"}}, admin_token="adm")
    async with sim.serve() as server:
        at_start = loaded()
        from grpclib.client import Channel
        from grpclib.const import Cardinality
        from grpclib.exceptions import GRPCError
        from simulator import bound_port
        channel = Channel("127.0.0.1", bound_port(server), codec=Raw())
        answers = {{}}
        async def call(label, path, payload, token=None):
            metadata = {{"authorization": "Bearer " + token}} if token else None
            try:
                async with channel.request(path, Cardinality.UNARY_UNARY, bytes, bytes,
                                           metadata=metadata) as stream:
                    await stream.send_message(payload, end=True)
                    answers[label] = (await stream.recv_message()).hex()
            except GRPCError as exc:
                answers[label] = exc.status.name + ": " + (exc.message or "")
        api, control = "/gitpod.v1.WorkspacesService/", "/gitpod.simulator.v1.SimulatorService/"
        await call("health", "/grpc.health.v1.Health/Check", b"")
        await call("unknown", api + "GetWorkspace", b"\\x0a\\x1bgitpodio-gitpod-isq6xj458lj",
                   "alice-token")
        await call("list", api + "ListWorkspaces", b"", "alice-token")
        await call("plans", control + "ListPlans", b"", "adm")
        await call("malformed", api + "GetWorkspace", b"\\x08\\x01", "alice-token")
        channel.close()
        after = [m for m in ("betterproto2", "google.protobuf", "simulator._proto.gitpod.v1",
                             "simulator._proto.gitpod.simulator.v1") if m in sys.modules]
        print("PROBE " + json.dumps({{"at_start": at_start, "answers": answers, "after": after}}))

asyncio.run(main())
"""
    found = _run(probe)
    assert found["at_start"] == []
    answers = found["answers"]
    assert answers["health"] == "0801"  # status: SERVING
    assert answers["unknown"].startswith("NOT_FOUND: "), answers  # its id was decoded
    assert answers["list"] == ""  # no workspaces yet
    assert answers["plans"] == ""
    # a varint where the id's string belongs: refused by the strict codec (Google's parser)
    assert answers["malformed"].startswith("INVALID_ARGUMENT: malformed GetWorkspaceRequest"), (
        answers
    )
    assert found["after"] == [
        "betterproto2",
        "google.protobuf",
        "simulator._proto.gitpod.v1",
        "simulator._proto.gitpod.simulator.v1",
    ]


def test_every_handler_resolves_the_message_types_of_its_schema() -> None:
    """Each deferred request and reply type is the class the served schema names for the method
    (a wrong name would otherwise surface only at that method's first call)."""
    import betterproto2

    from simulator import Simulator
    from simulator._proto.message_pool import default_message_pool
    from simulator.server.reflection import descriptor_pool_for_server

    pool = descriptor_pool_for_server()
    sim = Simulator(seed=1)
    seen = 0
    for service in sim.services():
        for path, handler in service.__mapping__().items():
            service_name, method_name = path.strip("/").split("/")
            method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
            for kind, expected in (
                (handler.request_type, method.input_type),
                (handler.reply_type, method.output_type),
            ):
                if isinstance(kind, type) and issubclass(kind, betterproto2.Message):
                    url = default_message_pool.type_to_url[kind]
                    name = url.removeprefix("type.googleapis.com/")
                else:  # health and reflection: Google classes from the private pool
                    name = kind.DESCRIPTOR.full_name
                assert name == expected.full_name, path
            seen += 1
    assert seen == 10 + 25 + 2 + 2  # the API, the control plane, health, reflection v1/v1alpha


def test_stop_payload_is_the_encoded_empty_response() -> None:
    from simulator._proto.gitpod import v1 as pb

    assert bytes(pb.StopWorkspaceResponse()) == STOP_PAYLOAD


def test_a_deferred_module_loads_at_its_first_read_then_is_that_module() -> None:
    probe = """
import json, sys, types
from simulator.server.deferred import deferred_module
stand_in = deferred_module("colorsys")
before = "colorsys" in sys.modules
hsv = stand_in.rgb_to_hsv(1.0, 0.0, 0.0)
import colorsys
try:
    stand_in.no_such_name
    missing = "found"
except AttributeError as exc:
    missing = str(exc)
print("PROBE " + json.dumps({
    "before": before,
    "hsv": hsv,
    "same": stand_in.rgb_to_hsv is colorsys.rgb_to_hsv,
    "plain": type(stand_in) is types.ModuleType,
    "missing": missing,
}))
"""
    assert _run(probe) == {
        "before": False,
        "hsv": [0.0, 1.0, 1.0],
        "same": True,
        "plain": True,
        "missing": "module 'colorsys' has no attribute 'no_such_name'",
    }
