"""The Ray backend as an agent provider: `open(spec)` runs the session in an actor on a node.

The worker on the head runs exactly as with a local session: its checkout (`spec.cwd`) is a mirror
of the node's, kept current through the remote (`git.node_sync`), and the session's events arrive
as the CLI's would. A node lost mid-session ends the session as crashed; the mirror then holds the
last pushed commit and the last pushed uncommitted work, which the worker saves as a recovery ref
before the task is dispatched again, to whichever node has a free slot.

Actors are warm: one per agent slot of the cluster, made when the provider starts and reused from
session to session (a fresh actor process takes about half a second to start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from anyio import to_thread

from stoneforge.agents.events import AgentEvent, Failure, FailureKind
from stoneforge.agents.provider import SessionSpec
from stoneforge.cluster.connect import connect, node_report, slot_totals
from stoneforge.cluster.node import AgentSlot
from stoneforge.cluster.protocol import (
    AGENT_SLOTS,
    CallItem,
    Credentials,
    EndItem,
    EventItem,
    NodeInfo,
    SessionRequest,
    Started,
)
from stoneforge.config import StoneforgeConfig
from stoneforge.git.node_sync import (
    delete_remote_ref,
    follow_branch,
    note_remote_tip,
    push_session_start,
    recovery_refs,
    remote_url,
    take_node_work,
    wip_ref,
)
from stoneforge.git.repo import ref_value, run_git
from stoneforge.git.snapshot import checked_out_branch
from stoneforge.redact import is_secret_name

log = logging.getLogger("stoneforge.cluster")

#: Variables of the head's environment a local CLI would inherit and a node's must get too.
FORWARDED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "DISABLE_", "GIT_AUTHOR_", "GIT_COMMITTER_")
_NOT_FORWARDED = {"CLAUDE_CONFIG_DIR"}
_POLL_S = 1.0
_END_WAIT_S = 60.0


def split_credentials(spec: SessionSpec) -> tuple[dict[str, str], Credentials]:
    """The session's environment without secrets, and the secrets (for the actor alone)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_PREFIXES) and k not in _NOT_FORWARDED
    }
    env.update(spec.env)
    public = {k: v for k, v in env.items() if not is_secret_name(k)}
    secret = {k: v for k, v in env.items() if is_secret_name(k)}
    return public, Credentials(api_key=spec.api_key, env=secret)


@dataclass(eq=False)
class _Slot:
    actor: Any
    ready: Any  # the ObjectRef of its first `info()`
    info: NodeInfo | None = None
    session_id: str | None = None  # the session it runs now (None: idle)


@dataclass
class ClusterStats:
    """What the bench reads: how long the head spent starting each session."""

    start_ms: list[float] = field(default_factory=list)
    prepare_ms: list[float] = field(default_factory=list)
    end_ms: list[float] = field(default_factory=list)


class RayProvider:
    """Runs worker sessions in warm actors on the cluster's nodes."""

    name = "claude-code-ray"

    def __init__(
        self,
        *,
        root: Path,
        config: StoneforgeConfig,
        target: str,
        on_nodes: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        remote = config.merge.remote
        if not remote:  # the config refuses this too; a provider made by hand must not run
            raise ValueError("the Ray backend needs merge.remote")
        self.root = root
        self.config = config
        self.target = target
        self.url = remote_url(root, remote)
        self.on_nodes = on_nodes
        self.stats = ClusterStats()
        self._ray = connect(config.ray.address)
        self.capacity, self.check_capacity = slot_totals()
        if self.capacity < 1:
            raise RuntimeError(
                f"the Ray cluster offers no {AGENT_SLOTS}: start each node with "
                f"`ray start --resources='{{\"{AGENT_SLOTS}\": 4}}'` (one slot per agent)"
            )
        self._actor_class = self._ray.remote(AgentSlot)
        self._idle: list[_Slot] = [self._new_slot() for _ in range(self.capacity)]  # warm
        self._busy: set[_Slot] = set()
        self._released = asyncio.Event()
        self.identity = _identity(root)
        self._last_report: list[dict[str, Any]] | None = None

    def open(self, spec: SessionSpec) -> RaySession:
        return RaySession(self, spec)

    # -- slots -----------------------------------------------------------------------------

    def _new_slot(self) -> _Slot:
        actor = self._actor_class.options(
            num_cpus=0, resources={AGENT_SLOTS: 1}, max_restarts=0, max_task_retries=0
        ).remote()
        return _Slot(actor=actor, ready=actor.info.remote())

    async def acquire(self, session_id: str) -> _Slot:
        """An idle warm slot, a new one where the cluster has room, or wait for a release."""
        while True:
            if self._idle:
                slot = self._idle.pop(0)
            elif len(self._busy) < await to_thread.run_sync(lambda: slot_totals()[0]):
                slot = self._new_slot()
            else:
                self._released.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), 2.0)
                continue
            try:
                slot.info = slot.info or await slot.ready
            except self._ray.exceptions.RayActorError:
                continue  # died before it was used (its node is gone): take another
            slot.session_id = session_id
            self._busy.add(slot)
            self.report_nodes()
            return slot

    def release(self, slot: _Slot, *, alive: bool) -> None:
        self._busy.discard(slot)
        slot.session_id = None
        if alive:
            self._idle.append(slot)
        self._released.set()
        self.report_nodes()

    def report_nodes(self) -> None:
        """Tell the head's store which nodes there are and what runs there (on change)."""
        if self.on_nodes is None:
            return
        sessions: dict[str, list[str]] = {}
        for slot in self._busy:
            if slot.info is not None:
                sessions.setdefault(slot.info.node_id, []).append(slot.session_id or "")
        try:
            report = node_report(sessions)
        except Exception:  # status is best effort; the sessions are what matter
            log.debug("could not read the cluster's nodes", exc_info=True)
            return
        if report != self._last_report:
            self._last_report = report
            self.on_nodes(report)

    def known_tip(self, branch: str) -> str | None:
        """Where the head last saw ``branch`` on the remote (its tracking ref)."""
        remote = self.config.merge.remote
        return ref_value(self.root, f"refs/remotes/{remote}/{branch}") if remote else None

    def note_tip(self, branch: str, tip: str) -> None:
        if self.config.merge.remote:
            note_remote_tip(self.root, self.config.merge.remote, branch, tip)

    def shutdown(self) -> None:
        for slot in [*self._idle, *self._busy]:
            with contextlib.suppress(Exception):
                self._ray.kill(slot.actor)
        self._idle.clear()
        self._busy.clear()


def _identity(root: Path) -> dict[str, str]:
    found = {}
    for key in ("user.name", "user.email"):
        value = run_git(["config", "--get", key], root, check=False).stdout.strip()
        if value:
            found[key] = value
    return found


class RaySession:
    """One session in an actor; see :class:`~stoneforge.agents.provider.AgentSession`."""

    def __init__(self, provider: RayProvider, spec: SessionSpec) -> None:
        self.provider = provider
        self.spec = spec
        self.session_id = spec.config_dir.name  # `.stoneforge/agents/<session-id>`
        self.wip_ref = wip_ref(self.session_id)
        self.branch = ""
        self.slot: _Slot | None = None
        self.started: Started | None = None
        self._failure: Failure | None = None
        self._provider_session_id: str | None = None
        self._head = ""
        self._ended = False
        self._lost = False
        self._calls: set[asyncio.Task[None]] = set()

    # -- AgentSession ------------------------------------------------------------------------

    @property
    def provider_session_id(self) -> str | None:
        return self._provider_session_id

    @property
    def pid(self) -> int | None:
        return None  # the CLI runs on another machine: no pid of ours to signal or recover

    @property
    def node(self) -> NodeInfo | None:
        return self.slot.info if self.slot is not None else None

    async def send(self, text: str) -> None:
        if self.slot is not None:
            await self.slot.actor.send.remote(text)

    async def stop(self, reason: str = "stopped") -> None:
        if self.slot is not None and not self._lost:
            with contextlib.suppress(self.provider._ray.exceptions.RayActorError):
                await self.slot.actor.stop.remote(reason)

    def kill(self) -> None:
        if self.slot is not None and not self._lost:
            self.slot.actor.kill.remote()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> RaySession:
        began = time.perf_counter()
        spec, provider = self.spec, self.provider
        branch = checked_out_branch(spec.cwd)
        if branch is None:
            self._failure = Failure(
                kind=FailureKind.STARTUP,
                message=f"{spec.cwd} is not on a branch: nothing to hand to a node",
                retryable=False,
            )
            return self
        self.branch = branch
        try:
            known = provider.known_tip(branch)
            commit = await to_thread.run_sync(
                lambda: push_session_start(spec.cwd, provider.url, branch, known)
            )
            recovery = await to_thread.run_sync(lambda: recovery_refs(spec.cwd))
        except Exception as exc:  # the remote is unreachable: nothing can run on a node
            self._failure = Failure(
                kind=FailureKind.CRASHED, message=f"could not push {branch} to the remote: {exc}"
            )
            return self
        self._head = commit
        provider.note_tip(branch, commit)
        public_env, credentials = split_credentials(spec)
        request = SessionRequest(
            spec=dataclasses.replace(spec, mcp=None, api_key=None, env=public_env),
            session_id=self.session_id,
            mcp_tools=tuple(spec.mcp.enabled) if spec.mcp is not None else (),
            remote_url=provider.url,
            branch=branch,
            commit=commit,
            target=provider.target,
            recovery_refs=recovery,
            wip_ref=self.wip_ref,
            identity=provider.identity,
            sandbox=provider.config.agents.sandbox,
            cli_path=provider.config.agents.worker.cliPath,
            recovery_interval_s=provider.config.ray.recoveryIntervalS,
            setup=tuple(provider.config.worktree.setup),
            setup_timeout_s=provider.config.worktree.setupTimeoutS,
        )
        errors = provider._ray.exceptions
        for _ in range(3):  # a slot whose node just died is not the session's failure
            slot = await provider.acquire(self.session_id)
            try:
                self.started = await slot.actor.start.remote(request, credentials)
            except errors.RayActorError:
                provider.release(slot, alive=False)
                continue
            except errors.RayTaskError as exc:  # its checkout could not be made there
                provider.release(slot, alive=True)
                self._failure = Failure(
                    kind=FailureKind.CRASHED,
                    message=f"could not start on node {slot.info.address if slot.info else '?'}: "
                    f"{_first_line(exc)}",
                )
                return self
            except BaseException:  # cancelled while starting: the node must not go on alone
                slot.actor.stop.remote("the session's start was cancelled")
                provider.release(slot, alive=True)
                raise
            self.slot = slot
            provider.stats.start_ms.append((time.perf_counter() - began) * 1000)
            provider.stats.prepare_ms.append(self.started.prepare_ms)
            return self
        self._failure = Failure(
            kind=FailureKind.CRASHED, message="no node of the cluster could take the session"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for call in self._calls:
            call.cancel()
        slot = self.slot
        if slot is None:
            return
        if not (self._ended or self._lost):
            if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
                slot.actor.stop.remote("the head stopped waiting")  # a forced stop: no waiting
                self.provider.release(slot, alive=True)
                return
            await self.stop("the head left the session")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_END_WAIT_S):
                    async for _ in self.events():
                        pass
        self.provider.release(slot, alive=not self._lost)

    async def events(self) -> AsyncIterator[AgentEvent]:
        if self._failure is not None or self.slot is None:
            yield self._failure or Failure(kind=FailureKind.STARTUP, message="not started")
            return
        actor, errors = self.slot.actor, self.provider._ray.exceptions
        while not self._ended:
            try:
                items = await actor.poll.remote(_POLL_S)
            except errors.RayActorError as exc:
                yield await self._node_lost(exc)
                return
            for item in items:
                if isinstance(item, CallItem):
                    call = asyncio.create_task(self._answer(item))
                    self._calls.add(call)
                    call.add_done_callback(self._calls.discard)
                elif isinstance(item, EventItem):
                    if item.head != self._head:  # a commit was pushed: the mirror follows
                        self._head = item.head
                        await to_thread.run_sync(self._follow)
                    event = item.event
                    if getattr(event, "provider_session_id", None):
                        self._provider_session_id = event.provider_session_id  # type: ignore[union-attr]
                    yield event
                elif isinstance(item, EndItem):
                    await self._take_work(item)
                    return

    # -- internals ---------------------------------------------------------------------------

    def _follow(self) -> None:
        tip = follow_branch(self.spec.cwd, self.provider.url, self.branch)
        self.provider.note_tip(self.branch, tip)

    async def _take_work(self, end: EndItem) -> None:
        """The session ended on its node: the mirror takes its last pushed state."""
        self._ended = True
        began = time.perf_counter()
        if end.error:
            log.warning("session %s: the node's last push failed: %s", self.session_id, end.error)
        spec, url = self.spec, self.provider.url
        await to_thread.run_sync(
            lambda: take_node_work(
                spec.cwd, url, self.branch, self.wip_ref, on_branch=end.on_branch
            )
        )
        self.provider.note_tip(self.branch, end.head)  # its last push that succeeded
        await to_thread.run_sync(lambda: delete_remote_ref(spec.cwd, url, self.wip_ref))
        self.provider.stats.end_ms.append((time.perf_counter() - began) * 1000)

    async def _node_lost(self, exc: BaseException) -> Failure:
        """Ray says the actor is dead (its node is gone): a crash, with the pushed work kept."""
        self._lost = True
        self._ended = True
        info = self.node
        where = f"{info.hostname} ({info.address})" if info is not None else "its node"
        spec, url = self.spec, self.provider.url
        saved = ""
        try:
            state = await to_thread.run_sync(
                lambda: take_node_work(spec.cwd, url, self.branch, self.wip_ref)
            )
            saved = f"; the last commit it pushed is {state.head[:12]}" + (
                f" and its last pushed uncommitted work ({state.files} files) is in the checkout"
                if state.wip
                else ""
            )
        except Exception as err:  # the remote is unreachable too: the worker says so
            saved = f"; its pushed work could not be fetched: {err}"
        self.provider.report_nodes()
        return Failure(
            kind=FailureKind.CRASHED,
            message=f"the node {where} running this session was lost ({_first_line(exc)}){saved}",
            retryable=True,
        )

    async def _answer(self, call: CallItem) -> None:
        """A `stoneforge` MCP tool called on the node: the head's tools answer it."""
        tools = self.spec.mcp
        try:
            handler = getattr(tools, call.tool) if tools is not None else None
            result = (
                await handler(call.args)
                if handler is not None
                else {"content": [{"type": "text", "text": "Recorded."}], "is_error": False}
            )
        except Exception as exc:  # the tool failed here: the model gets an error result
            log.exception("stoneforge tool %s failed", call.tool)
            result = {"content": [{"type": "text", "text": f"error: {exc}"}], "is_error": True}
        if self.slot is not None and not self._lost:
            with contextlib.suppress(self.provider._ray.exceptions.RayActorError):
                await self.slot.actor.reply.remote(call.call_id, result)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
