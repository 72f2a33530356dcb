"""Drive the steward directly on a real git repository, without agents or `sf serve`.

`StewardRig` makes a repository with a `.stoneforge/` store, creates task branches with plumbing
(no checkout is touched), opens tasks and merge requests as a worker would, and runs
`Steward.round()` until the queue is done. Checks are real shell commands; `check_script` writes a
check that records every commit it judged, so a test can prove that each commit on the target's
first-parent line was checked and passed before it landed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from stoneforge.agents import Failure, FailureKind, Result, SessionSpec, SessionStarted
from stoneforge.config import StoneforgeConfig
from stoneforge.git.merge import enable_shared_rerere
from stoneforge.models import MergeRequest, Task
from stoneforge.orchestrator.steward import Steward
from stoneforge.store import Fence, Store

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Rig",
    "GIT_AUTHOR_EMAIL": "rig@example.com",
    "GIT_COMMITTER_NAME": "Rig",
    "GIT_COMMITTER_EMAIL": "rig@example.com",
}

# A check of the tree: no `bad_*` file, every `needs_X` has its `provides_X`, no conflict
# markers. It appends "<commit> <ok|FAIL|FLAKE>" to the log named by its first argument. With a
# counter file and N as second and third arguments, every Nth run fails spuriously (a flake).
CHECK_SH = r"""#!/bin/bash
log="$1"
if [ -n "$2" ]; then
  n=$(( $(cat "$2" 2>/dev/null || echo 0) + 1 ))
  echo $n > "$2"
  if [ $(( n % $3 )) = 0 ]; then
    echo "spurious failure (run $n)"
    [ -n "$log" ] && echo "$(git rev-parse HEAD) FLAKE" >> "$log"
    exit 1
  fi
fi
fail=0
for f in bad_*; do
  [ -e "$f" ] && { echo "broken: $f is present"; fail=1; }
done
for f in needs_*; do
  [ -e "$f" ] || continue
  [ -e "provides_${f#needs_}" ] || { echo "broken: $f without provides_${f#needs_}"; fail=1; }
done
if grep -rlE '^(<<<<<<<|>>>>>>>) ' --exclude-dir=.git . ; then
  echo "broken: conflict markers"; fail=1
fi
if [ -n "$log" ]; then
  if [ $fail = 0 ]; then r=ok; else r=FAIL; fi
  echo "$(git rev-parse HEAD) $r" >> "$log"
fi
exit $fail
"""


def git(repo: Path, *args: str, input: str | None = None, env: Mapping[str, str] = {}) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **GIT_ENV, **env},
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def commit_files(
    repo: Path, parent: str, files: Mapping[str, str | None], message: str, index: Path
) -> str:
    """A commit on top of ``parent`` with ``files`` written (None deletes), no checkout used."""
    env = {"GIT_INDEX_FILE": str(index)}
    git(repo, "read-tree", parent, env=env)
    for path, content in files.items():
        if content is None:
            git(repo, "update-index", "--force-remove", path, env=env)
            continue
        blob = git(repo, "hash-object", "-w", "--stdin", input=content)
        git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
    tree = git(repo, "write-tree", env=env)
    return git(repo, "commit-tree", tree, "-p", parent, "-m", message)


def first_parents(repo: Path, ref: str = "main") -> list[str]:
    """Commits of ``ref``'s first-parent line, newest first, the root commit excluded."""
    return git(repo, "rev-list", "--first-parent", ref).split()[:-1]


def checked_ok(log: Path) -> set[str]:
    if not log.exists():
        return set()
    return {line.split()[0] for line in log.read_text().splitlines() if line.endswith(" ok")}


def check_tree(repo: Path, commit: str, script: Path, scratch: Path) -> bool:
    """Run the check script on ``commit`` in a scratch checkout (no log)."""
    if not scratch.exists():
        git(repo, "worktree", "add", "--detach", str(scratch), commit)
    else:
        git(scratch, "checkout", "-q", "--detach", commit)
        git(scratch, "clean", "-fdq")
    proc = subprocess.run(["bash", str(script), ""], cwd=scratch, capture_output=True)
    return proc.returncode == 0


# -- a stand-in for the steward agent ----------------------------------------------------------

_HUNK = re.compile(r"^<<<<<<< [^\n]*\n(.*?)^=======\n(.*?)^>>>>>>> [^\n]*\n", re.S | re.M)


def union_resolve(text: str) -> str:
    """Keep both sides of every conflict hunk (ours first), as an agent might."""
    return _HUNK.sub(lambda m: m.group(1) + m.group(2), text)


class ScriptedSession:
    """An agent session that plays a script in ``events()`` instead of running the CLI: the
    stand-ins of the tests share its no-op controls (it ends by itself, nothing to stop)."""

    provider_session_id: str | None = "stub-session"
    pid: int | None = None

    def __init__(self, spec: SessionSpec) -> None:
        self.spec = spec

    async def events(self) -> AsyncIterator[object]:
        yield SessionStarted(provider_session_id=self.provider_session_id)
        yield Result(
            provider_session_id=self.provider_session_id, is_error=False, subtype="success"
        )

    async def send(self, text: str) -> None:
        pass

    async def stop(self, reason: str = "") -> None:
        pass

    def kill(self) -> None:
        pass


class _StubSession(ScriptedSession):
    def __init__(
        self, spec: SessionSpec, resolve: bool, calls: list[SessionSpec], crash: bool = False
    ) -> None:
        super().__init__(spec)
        self.resolve = resolve
        self.crash = crash
        calls.append(spec)

    async def events(self) -> AsyncIterator[object]:
        yield SessionStarted(provider_session_id="stub-session")
        if self.crash:  # killed half way: one file touched, then the process is gone
            names = git(self.spec.cwd, "diff", "--name-only", "--diff-filter=U").split()
            if names:
                (Path(self.spec.cwd) / names[0]).write_text("half an edit\n")
            yield Failure(kind=FailureKind.CRASHED, message="the CLI was killed (signal 9)")
            return
        if self.resolve:
            names = git(self.spec.cwd, "diff", "--name-only", "--diff-filter=U").split()
            for name in names:
                path = Path(self.spec.cwd) / name
                path.write_text(union_resolve(path.read_text()))
        yield Result(provider_session_id="stub-session", is_error=False, subtype="success")


@dataclass
class StubProvider:
    """Stands in for Claude Code in the conflict ladder: keeps both sides, or gives up.

    The first ``crashes`` sessions fail as a killed agent would: with ``crash_mode`` "crashed"
    the session starts and its process dies; with "raise" the CLI cannot even be started.
    """

    resolve: bool = True
    calls: list[SessionSpec] = field(default_factory=list)
    name: str = "stub"
    crashes: int = 0
    crash_mode: str = "crashed"

    @contextlib.asynccontextmanager
    async def open(self, spec: SessionSpec) -> AsyncIterator[_StubSession]:
        crash = self.crashes > 0
        self.crashes -= crash
        if crash and self.crash_mode == "raise":
            self.calls.append(spec)
            raise OSError("the claude CLI could not be started")
        yield _StubSession(spec, self.resolve, self.calls, crash=crash)


# -- the rig -----------------------------------------------------------------------------------


class StewardRig:
    """A repository, a store, a config and (inside an event loop) a steward."""

    def __init__(
        self,
        root: Path,
        *,
        checks: list[str] | None = None,
        batch_size: int = 4,
        auto_merge: bool = True,
        max_attempts: int = 3,
        provider: StubProvider | None = None,
        files: Mapping[str, str] | None = None,
        flaky_every: int = 0,
        review: bool = False,
        parallel_checks: int | None = None,
    ) -> None:
        """``review``: `agents.steward.review` (off: these tests are about the queue; a worker
        run of the rig would otherwise open its merge request for a review first).
        ``parallel_checks``: `merge.parallelChecks` (None: the default, look-ahead on)."""
        self.root = root
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")
        (root / ".git" / "info" / "exclude").write_text(".stoneforge/\n")
        self.index = root / ".git" / "rig-index"
        initial = {"README.md": "# rig\n", **(files or {})}
        for path, content in initial.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(content)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "initial")
        (root / ".stoneforge").mkdir()
        self.store = Store(root / ".stoneforge" / "state.db")
        self.log = root.parent / f"{root.name}-checks.log"
        self.script = root.parent / f"{root.name}-check.sh"
        self.script.write_text(CHECK_SH)
        self.config = StoneforgeConfig.model_validate(
            {
                "orchestrator": {"maxAttempts": max_attempts},
                "agents": {"steward": {"autoMerge": auto_merge, "review": review}},
                "merge": {
                    "checks": [self.check_command(flaky_every)] if checks is None else checks,
                    "batchSize": batch_size,
                    "checkTimeoutS": 60,
                    **({} if parallel_checks is None else {"parallelChecks": parallel_checks}),
                },
            }
        )
        self.provider = provider or StubProvider()
        self.notes: list[str] = []
        self.landed_calls = 0
        enable_shared_rerere(root)
        self.steward: Steward | None = None

    def check_command(self, flaky_every: int = 0) -> str:
        command = f"bash {self.script} {self.log}"
        if flaky_every:
            command += f" {self.root.parent / (self.root.name + '-runs')} {flaky_every}"
        return command

    def make_steward(self, fence: Fence | None = None) -> Steward:
        """Call inside the event loop (the steward owns anyio primitives); with ``fence``, it
        acts as the holder of that lease."""
        self.steward = Steward(
            root=self.root,
            config=self.config,
            store=self.store,
            provider=self.provider,  # type: ignore[arg-type]
            target="main",
            agent_env={},
            note=self.notes.append,
            on_landed=self._landed,
            fence=fence,
        )
        return self.steward

    def _landed(self) -> None:
        self.landed_calls += 1

    def close(self) -> None:
        self.store.close()

    # -- work as a worker would leave it ---------------------------------------------------

    def tip(self, ref: str = "main") -> str:
        return git(self.root, "rev-parse", ref)

    def submit(
        self,
        title: str,
        files: Mapping[str, str | None],
        *,
        base: str = "main",
        priority: int = 3,
        depends_on: tuple[str, ...] = (),
        commits: int = 1,
    ) -> tuple[Task, MergeRequest]:
        """A task whose branch (from ``base``) writes ``files``, in review with a pending MR."""
        task = self.store.create_task(title, priority=priority, depends_on=depends_on)
        branch = f"sf/{task.id}"
        head = self.tip(base)
        items = list(files.items())
        for n in range(commits):
            part = dict(items[n::commits])
            head = commit_files(self.root, head, part, f"{title} ({n + 1})", self.index)
        git(self.root, "update-ref", f"refs/heads/{branch}", head)
        mr = self.complete(task.id, branch, head, commits)
        return self.store.get_task(task.id), mr

    def complete(self, task_id: str, branch: str, head: str, commits: int = 1) -> MergeRequest:
        """Dispatch the task and complete the attempt as a worker would (an MR for ``head``)."""
        attempt = self.store.dispatch_task(task_id).dispatches
        return self.store.complete_task(
            task_id,
            attempt=attempt,
            branch=branch,
            head_commit=head,
            summary=f"{self.store.get_task(task_id).title}\n\nCommits: {commits}",
        )

    def resubmit(self, task: Task, files: Mapping[str, str | None]) -> MergeRequest:
        """The task's next attempt: one more commit on its branch and a new merge request."""
        assert task.branch is not None
        head = commit_files(self.root, self.tip(task.branch), files, "Fix", self.index)
        git(self.root, "update-ref", f"refs/heads/{task.branch}", head)
        return self.complete(task.id, task.branch, head)

    async def drain(self, limit: int = 200) -> int:
        """Run rounds until the steward has nothing to do; returns the number of rounds."""
        steward = self.steward or self.make_steward()
        rounds = 0
        while await steward.round():
            rounds += 1
            assert rounds < limit, "the steward kept going round without finishing"
        return rounds


def run(async_fn, *args):  # noqa: ANN001, ANN201 - a tiny anyio.run wrapper for tests
    return anyio.run(async_fn, *args)
