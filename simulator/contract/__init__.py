"""A property-based contract suite for gitpod.v1.WorkspacesService, for any implementation.

Run it against the in-process simulator with ``pytest --pyargs simulator.contract``, or against a
running server with ``--gitpod-target HOST:PORT --gitpod-token T [--gitpod-token2 T]
[--gitpod-admin-token T]``. From Python::

    from simulator.contract import in_process, run_contract
    run_contract(in_process())

A remote target is shared and never reset: each example works in a namespace of its own (tokens
``k1-<run>x<n>``, context URLs prefixed ``CONTRACT_NS=<run>x<n>/``), and whatever else a caller's
listing holds is foreign (it keeps the paging rules and belongs to the caller; nothing else is
claimed of it). The client numbers each send and receipt (:class:`~simulator.contract.model.
Causality`); two observations are compared only when one was received before the other's request
was sent.

Each check and the API guarantee it relies on:

- *Monotonic reads* (one history per instance, whatever the call or stream): a status answered by
  a call, a listing or a stream message is not older (``status_version``) than any status of the
  same instance received before that call was sent or that stream was opened; a newer one is
  reachable in the transition table from it; nothing follows STOPPED. So a status seen on a stream
  before a unary call was sent is never newer than its answer, and a unary answer received before
  a stream was opened bounds the stream's first message.
- *One version, one status*: the same ``status_version`` shows the same status everywhere
  (admission aside: a STOPPED instance's follows its workspace's sharing on every read).
- *A stream's own order*: ``ListenToWorkspaceInstance`` sends legal direct transitions with
  strictly increasing versions, and ends right after STOPPED (checked whenever STOPPED is known,
  with a bounded wait for what is in flight).
- *Access*: another caller's unshared workspace is NOT_FOUND, a shared one's owner-only calls are
  PERMISSION_DENIED; a listing holds only the caller's own workspaces, foreign ones included
  (``owner_id``).
- *Idempotency* per caller and method: a repeated token answers the first call's id; the same token
  on another request is INVALID_ARGUMENT; concurrent calls with one token make one thing.
- *Paging*: page sizes kept, no item twice in one listing, every workspace the caller had at the
  first page listed, a foreign page token INVALID_ARGUMENT; within one answer active workspaces
  first (one answer is one instant); across pages only where nothing else may change them.
- *Clock-dependent expectations* (exact phases, the code of a stop or a GetActiveWorkspaceInstance,
  the messages of a stop stream, a stream having caught up) only where the clock is still (in
  process, or a manual clock seen through the control plane); elsewhere every outcome the spec
  allows between the two observations is accepted.
"""

from simulator.contract.machine import GitpodContract
from simulator.contract.model import ContractViolation
from simulator.contract.options import (
    CI_EXAMPLES,
    CI_STEPS,
    contract_settings,
    in_process,
    machine_for,
    remote,
    run_contract,
)
from simulator.contract.target import InProcessTarget, RemoteOptions, RemoteTarget, Target

__all__ = [
    "CI_EXAMPLES",
    "CI_STEPS",
    "ContractViolation",
    "GitpodContract",
    "InProcessTarget",
    "RemoteOptions",
    "RemoteTarget",
    "Target",
    "contract_settings",
    "in_process",
    "machine_for",
    "remote",
    "run_contract",
]
