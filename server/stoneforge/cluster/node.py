"""An agent slot on a node: a warm Ray actor that runs one worker session at a time.

The session is the same code as on the head (`ClaudeCodeProvider`, its sandbox and secret rules)
in a task checkout of this node's clone of the remote. Its events wait in a queue the head polls;
a call to a `stoneforge` MCP tool is passed to the head, which answers it (the orchestrator's
callbacks live there). The work leaves the node only as pushed refs: the branch after every
commit, the uncommitted work at every turn end, on an interval and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from stoneforge.agents.claude_code import ClaudeCodeProvider
from stoneforge.agents.events import (
    AssistantTurn,
    Failure,
    FailureKind,
    SessionStarted,
    ToolResult,
)
from stoneforge.agents.mcp_tools import StoneforgeTools
from stoneforge.agents.provider import AgentSession, SessionSpec
from stoneforge.cluster.protocol import (
    NODE_DIR_ENV,
    CallItem,
    Credentials,
    EndItem,
    EventItem,
    NodeInfo,
    NodeItem,
    SessionRequest,
    Started,
)
from stoneforge.git.node_sync import (
    exclude_untracked,
    node_head,
    node_repository,
    prepare_node_checkout,
    push_node_branch,
    push_wip,
)
from stoneforge.git.slug import check_task_id
from stoneforge.orchestrator.checkout_setup import run_setup, setup_failure

log = logging.getLogger("stoneforge.cluster.node")


def node_dir() -> Path:
    """This node's working directory (``STONEFORGE_NODE_DIR``, else one under its temp dir)."""
    configured = os.environ.get(NODE_DIR_ENV)
    if configured:
        return Path(configured)
    import ray  # only on a node, where Ray runs us

    node = ray.get_runtime_context().get_node_id()
    return Path(tempfile.gettempdir()) / f"stoneforge-node-{node[:12]}"


@dataclasses.dataclass(eq=False)
class _ForwardingTools(StoneforgeTools):
    """The `stoneforge` MCP tools on a node: each call is answered by the head."""

    forward: Any = None  # async (tool, args) -> the tool's MCP result

    async def complete_task(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.forward("complete_task", args)

    async def handoff(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.forward("handoff", args)

    async def ask_director(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.forward("ask_director", args)

    async def propose_plan(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.forward("propose_plan", args)


class SlotRun:
    """One session on this node, from its checkout to its last push."""

    def __init__(self, request: SessionRequest, credentials: Credentials, root: Path) -> None:
        self.request = request
        self.credentials = credentials
        self.root = root
        self.items: asyncio.Queue[NodeItem] = asyncio.Queue()
        self.live: AgentSession | None = None
        self.stop_reason: str | None = None
        self.killed = False
        self.pushed = request.commit  # the branch commit on the remote
        self.wip: str | None = None
        self._wip_state: tuple[str, str] | None = None  # (HEAD, tree) of the last wip push
        self._calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._push_lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.checkout: Path | None = None
        self.base: Path | None = None

    async def prepare(self) -> bool:
        req = self.request
        base = self.base = await asyncio.to_thread(node_repository, self.root, req.remote_url)
        # Named like the head's checkouts: by task branch (one directory per task).
        name = req.branch.replace("/", "-")
        self.checkout = base.parent.parent / "tasks" / base.stem / name
        checkout = self.checkout
        created = await asyncio.to_thread(
            lambda: prepare_node_checkout(
                base,
                checkout,
                req.remote_url,
                branch=req.branch,
                commit=req.commit,
                target=req.target,
                recovery=req.recovery_refs,
                identity=req.identity,
            )
        )
        if created and req.setup:
            slot_env = {k: v for k, v in req.spec.env.items() if k == "SF_TASK_SLOT"}
            runs = await run_setup(req.setup, checkout, req.setup_timeout_s, slot_env)
            failure = setup_failure(runs)
            if failure is not None:
                raise RuntimeError(failure)
            # What the set-up made (a venv, node_modules) is not the agent's work.
            await asyncio.to_thread(exclude_untracked, checkout)
        return created

    def spec(self) -> SessionSpec:
        req = self.request
        assert self.checkout is not None
        tools = _ForwardingTools(enabled=req.mcp_tools, forward=self.call)
        return dataclasses.replace(
            req.spec,
            cwd=self.checkout,
            config_dir=self.root / "agents" / req.session_id,
            # Readable in the sandbox (its objects are the checkout's), even under a private /tmp.
            repo_root=self.base,
            mcp=tools,
            api_key=self.credentials.api_key,
            env={**req.spec.env, **self.credentials.env},
        )

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        call_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self.items.put_nowait(CallItem(call_id=call_id, tool=tool, args=dict(args)))
        try:
            return await future
        finally:
            self._calls.pop(call_id, None)

    def reply(self, call_id: str, result: dict[str, Any]) -> None:
        future = self._calls.get(call_id)
        if future is not None and not future.done():
            future.set_result(result)

    async def main(self) -> None:
        req = self.request
        end_error: str | None = None
        ticker = asyncio.create_task(self._wip_every(req.recovery_interval_s))
        try:
            provider = ClaudeCodeProvider(cli_path=req.cli_path, sandbox=req.sandbox)
            async with provider.open(self.spec()) as session:
                self.live = session
                if self.stop_reason is not None:
                    await session.stop(self.stop_reason)
                async for event in session.events():
                    if isinstance(event, ToolResult):
                        await self._push_branch()  # a commit leaves the node at once
                    if isinstance(event, SessionStarted):
                        event = event.model_copy(update={"pid": None})  # a pid of this node
                    self.items.put_nowait(EventItem(event=event, head=self.pushed))
                    if isinstance(event, AssistantTurn):
                        await self._push_wip()  # a turn ended: its work leaves the node
        except Exception as exc:  # the session could not run here: a crash, retried elsewhere
            log.exception("session %s failed on this node", req.session_id)
            failure = Failure(kind=FailureKind.CRASHED, message=f"on {socket.gethostname()}: {exc}")
            self.items.put_nowait(EventItem(event=failure, head=self.pushed))
        finally:
            self.live = None
            ticker.cancel()
            for future in self._calls.values():
                future.cancel()
            try:
                await self._push_branch()
                await self._push_wip()
            except Exception as exc:  # noted for the head; the work stays in this checkout
                end_error = f"{type(exc).__name__}: {exc}"
            on_branch = True
            if self.checkout is not None:
                with contextlib.suppress(Exception):
                    on_branch = (await asyncio.to_thread(node_head, self.checkout))[1]
            self.items.put_nowait(
                EndItem(head=self.pushed, wip=self.wip, on_branch=on_branch, error=end_error)
            )

    async def _wip_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self._push_wip()

    async def _push_branch(self) -> None:
        assert self.checkout is not None
        async with self._push_lock:
            self.pushed = await asyncio.to_thread(
                push_node_branch,
                self.checkout,
                self.request.remote_url,
                self.request.branch,
                self.pushed,
            )

    async def _push_wip(self) -> None:
        """Push the worktree as the session's work-in-progress ref, if it changed."""
        assert self.checkout is not None
        checkout, req = self.checkout, self.request
        async with self._push_lock:

            def push() -> tuple[str, str] | None:
                from stoneforge.git.snapshot import _worktree_tree
                from stoneforge.git.task_clone import hardened_env

                head = node_head(checkout)[0]
                state = (head, _worktree_tree(checkout, hardened_env()))
                if state == self._wip_state:
                    return None
                commit, _ = push_wip(checkout, req.remote_url, req.wip_ref, req.session_id)
                self.wip = commit
                return state

            state = await asyncio.to_thread(push)
            if state is not None:
                self._wip_state = state


class AgentSlot:
    """The actor (one per agent slot). Methods are async: polls, replies and stops of the
    running session are served while it runs."""

    def __init__(self) -> None:
        self.root = node_dir()
        self.run: SlotRun | None = None

    def info(self) -> NodeInfo:
        import ray

        context = ray.get_runtime_context()
        return NodeInfo(
            node_id=context.get_node_id(),
            address=ray.util.get_node_ip_address(),
            hostname=socket.gethostname(),
            node_dir=str(self.root),
            pid=os.getpid(),
        )

    async def start(self, request: SessionRequest, credentials: Credentials) -> Started:
        check_task_id(request.session_id)
        previous = self.run
        if previous is not None and previous.task is not None and not previous.task.done():
            previous.stop_reason = previous.stop_reason or "a new session took the slot"
            await previous.task
        began = time.perf_counter()
        run = SlotRun(request, credentials, self.root)
        self.run = run
        created = await run.prepare()
        prepare_ms = (time.perf_counter() - began) * 1000
        run.task = asyncio.create_task(run.main())
        return Started(
            node=self.info(), checkout=str(run.checkout), created=created, prepare_ms=prepare_ms
        )

    async def poll(self, timeout: float = 1.0) -> list[NodeItem]:
        """The session's next items (waits up to ``timeout`` for the first)."""
        run = self.run
        if run is None:
            return []
        try:
            first = await asyncio.wait_for(run.items.get(), timeout)
        except TimeoutError:
            return []
        items = [first]
        while not run.items.empty():
            items.append(run.items.get_nowait())
        return items

    async def reply(self, call_id: str, result: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.reply(call_id, result)

    async def send(self, text: str) -> None:
        if self.run is not None and self.run.live is not None:
            await self.run.live.send(text)

    async def stop(self, reason: str) -> None:
        run = self.run
        if run is None:
            return
        run.stop_reason = reason
        if run.live is not None:
            await run.live.stop(reason)

    async def kill(self) -> None:
        run = self.run
        if run is not None and run.live is not None:
            run.killed = True
            run.live.kill()

    async def ping(self) -> bool:
        return True
