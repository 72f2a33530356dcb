"""The ladder's last rung: a steward agent session resolves the conflict markers in the
steward's checkout; its resolution is committed as the merge only if it touched nothing but
the conflicted files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.agents import (
    AgentSession,
    Role,
    build_spec,
    claude_setup,
    default_config_dir,
    run_session,
)
from stoneforge.agents.accounting import TokenStats
from stoneforge.git.conflicts import find_conflict_hunks
from stoneforge.git.repo import resolve_commit, run_git
from stoneforge.git.snapshot import commit_all
from stoneforge.models import SessionRole, SessionStatus, utcnow
from stoneforge.orchestrator.session_rows import record_token_stats
from stoneforge.orchestrator.steward.base import (
    Entry,
    ResolverCrashed,
    ResolverInterrupted,
    StewardBase,
)

log = logging.getLogger("stoneforge.steward")


class ResolverMixin(StewardBase):
    """The steward agent's session and the check of its resolution."""

    async def _agent_resolve(
        self, entry: Entry, path: Path, base: str, files: list[str]
    ) -> str | None | ResolverCrashed:
        """The agent's merge commit; None when it completed but the conflict is still there;
        ResolverCrashed when the session did not complete (crashed, hung, failed to start).
        Raises ResolverInterrupted when the orchestrator stops it (or is stopping)."""
        if self._stopped:
            raise ResolverInterrupted(
                "not starting the steward agent: the orchestrator is stopping"
            )
        session = self.store.start_session(entry.task.id, SessionRole.STEWARD)
        theirs = self.store.get_task(entry.task.id)
        prompt = (
            f"The merge of branch `{entry.mr.branch}` (task {theirs.id}: {theirs.title}) into "
            f"`{self.target}` stopped with conflicts in: {', '.join(files)}.\n\n"
            f"The branch's change: {entry.mr.summary[:2000]}\n\n"
            "Resolve every conflict marker (<<<<<<<, =======, >>>>>>>) in those files so that "
            f"both the work already on `{self.target}` and the branch's change are kept, as the "
            "code's intent requires. Edit only those files. Do not commit and do not run git "
            "merge, rebase or reset: the steward commits your resolution and checks it."
        )
        steward = self.config.agents.steward
        spec = build_spec(
            Role.STEWARD,
            cwd=path,
            prompt=prompt,
            config_dir=default_config_dir(self.root, session.id),
            repo_root=self.root,
            target_branch=self.target,
            model=steward.model,
            env=self.agent_env,
            max_turns=steward.maxTurns,
            idle_timeout_s=steward.idleTimeoutS,
            claude_setup=claude_setup.for_role(
                self.root,
                inherit=self.config.agents.claudeSetup == "inherit",
                mcp_servers=steward.mcpServers == "inherit",
            ),
        )

        def on_update(stats: TokenStats) -> None:
            record_token_stats(self.store, session.id, stats)

        async def on_start(live: AgentSession) -> None:
            self._agent = live
            if live.pid:  # recorded at spawn, so recovery finds the CLI even if we die now
                self.store.update_session(session.id, pid=live.pid)
            if self._stopped:
                await live.stop("stoneforge: the orchestrator is stopping")

        def end(status: SessionStatus, error: str | None, **fields: object) -> None:
            self.store.update_session(
                session.id, status=status, ended_at=utcnow(), error=error, **fields
            )

        self._agent_session_id = session.id
        try:
            outcome = await run_session(self.provider, spec, on_update=on_update, on_start=on_start)
        except anyio.get_cancelled_exc_class():  # the orchestrator stopped under it
            end(SessionStatus.FAILED, "stopped (the orchestrator stopped)")
            raise
        except Exception as exc:  # the agent could not even start: a crash, tried again
            log.exception("steward agent session for %s failed", entry.mr.id)
            error = f"{type(exc).__name__}: {exc}"
            end(SessionStatus.CRASHED, error)
            return ResolverCrashed(f"could not start ({error})")
        finally:
            self._agent, self._agent_session_id = None, None
        ids = {"pid": outcome.pid, "provider_session_id": outcome.provider_session_id}
        if outcome.status == "stopped" or (self._stopped and outcome.status != "completed"):
            end(SessionStatus.FAILED, "stopped (the orchestrator is stopping)", **ids)
            raise ResolverInterrupted("the steward agent was stopped; the merge waits in the queue")
        if outcome.status != "completed":
            end(SessionStatus.CRASHED, outcome.error, **ids)
            return ResolverCrashed(f"ended {outcome.status} ({outcome.error or 'no result'})")
        end(SessionStatus.COMPLETED, outcome.error, **ids)
        remaining = await to_thread.run_sync(lambda: self._markers_left(path, files))
        if remaining:
            self.note(f"{entry.mr.id}: conflict markers remain in {', '.join(remaining)}")
            return None
        message = f"Merge task {entry.task.id}: {entry.task.title} (conflicts resolved by steward)"
        return await to_thread.run_sync(lambda: self._conclude(path, base, entry, message, files))

    def _conclude(
        self, path: Path, base: str, entry: Entry, message: str, files: Sequence[str]
    ) -> str | None:
        """Commit the agent's resolution as the merge commit (first parent ``base``).

        Refused (None) unless it changes only the files that conflicted: everything else must be
        exactly git's own merge of the two sides.
        """
        commit = commit_all(path, message)
        head = run_git(["rev-parse", "HEAD"], path).stdout.strip()
        if commit is None and head != base:
            commit = head  # the agent committed the merge itself
        if commit is None:
            return None
        parents = run_git(["rev-list", "--parents", "-n", "1", commit], path).stdout.split()[1:]
        tip = resolve_commit(self.root, entry.mr.branch)
        if parents != [base, tip]:
            log.warning("steward merge %s has parents %s, not [%s, %s]", commit, parents, base, tip)
            return None
        extra = self._changed_beyond(base, tip, commit, files)
        if extra:
            self.note(
                f"{entry.mr.id}: the steward agent's resolution also changed {', '.join(extra)}, "
                "which did not conflict; refused"
            )
            return None
        return commit

    def _changed_beyond(
        self, base: str, tip: str, commit: str, conflicted: Sequence[str]
    ) -> list[str]:
        """Paths where ``commit`` differs from git's own merge of ``base`` and ``tip``, other than
        the ``conflicted`` ones (whose merge holds conflict markers the agent had to resolve)."""
        merged = run_git(["merge-tree", "--write-tree", base, tip], self.root, check=False)
        tree = merged.stdout.split("\n", 1)[0].strip()
        changed = run_git(["diff", "--name-only", "--no-renames", tree, commit], self.root)
        return [name for name in changed.stdout.split() if name not in set(conflicted)]

    @staticmethod
    def _markers_left(path: Path, files: Sequence[str]) -> list[str]:
        left = []
        for name in files:
            file = path / name
            if file.is_file():
                text = file.read_text(encoding="utf-8", errors="replace")
                if find_conflict_hunks(text) or "<<<<<<< " in text:
                    left.append(name)
        return left
