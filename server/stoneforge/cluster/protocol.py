"""What travels between the head and an agent slot on a node (as Ray call arguments/results).

No git data travels here: work moves through refs on the remote (`git.node_sync`). Credentials
travel only in :class:`Credentials`, an argument of the one call that starts a session: Ray keeps
call arguments out of its job, actor and task metadata (unlike a runtime environment or actor
options, which its state API shows to anyone on the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from stoneforge.agents.events import AgentEvent
from stoneforge.agents.provider import SessionSpec

#: The custom resources a node offers: one per agent session / check it may run at once.
AGENT_SLOTS = "stoneforge_agent_slots"
CHECK_SLOTS = "stoneforge_check_slots"
#: A node's working directory for clones and CLI state (else a directory under its temp dir).
NODE_DIR_ENV = "STONEFORGE_NODE_DIR"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str
    hostname: str
    node_dir: str
    pid: int


@dataclass(frozen=True, repr=False)
class Credentials:
    """The session's secrets: the API key and secret-named variables of its environment."""

    api_key: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never printed, whatever logs the call
        return f"Credentials({len(self.env) + (self.api_key is not None)} values)"


@dataclass(frozen=True)
class SessionRequest:
    """One session for a node: the head's spec (paths, MCP tools and secrets taken out) and
    where its work lives on the remote."""

    spec: SessionSpec  # cwd/config_dir/repo_root are the head's; the node puts its own
    session_id: str
    mcp_tools: tuple[str, ...]  # the stoneforge tools offered; calls are answered by the head
    remote_url: str
    branch: str
    commit: str  # the branch's commit on the remote when the session starts
    target: str
    recovery_refs: list[str]
    wip_ref: str
    identity: dict[str, str]  # user.name / user.email of the head's repository
    sandbox: Literal["required", "auto", "off"]
    cli_path: str | None = None
    recovery_interval_s: float = 10.0
    #: `worktree.setup`, run in a checkout new on the node (the head's mirror has its own).
    setup: tuple[str, ...] = ()
    setup_timeout_s: float = 900.0


@dataclass(frozen=True)
class Started:
    node: NodeInfo
    checkout: str
    created: bool  # a new checkout (False: an earlier session of the task ran on this node)
    prepare_ms: float


@dataclass(frozen=True)
class EventItem:
    event: AgentEvent
    head: str  # the branch commit pushed so far (the head follows it)


@dataclass(frozen=True)
class CallItem:
    call_id: str
    tool: str
    args: dict[str, Any]


@dataclass(frozen=True)
class EndItem:
    head: str  # the last pushed branch commit
    wip: str | None  # the last pushed work in progress, if any
    on_branch: bool
    error: str | None = None  # a push that failed at the end (the work stays on the node)


NodeItem = EventItem | CallItem | EndItem
