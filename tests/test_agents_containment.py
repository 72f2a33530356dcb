"""Agents are contained by structure: `sf serve` with the real CLI against the scripted endpoint.

A scripted worker tries every escape reproduced in issue 14 (with the Bash guard taken out of the
way where it would stop the command first, so what stops them is the sandbox and the task clone),
then does its own work. Afterwards the target, the main checkout, another task's checkout and the
repository's config are byte-for-byte as they were, the key never reached the model, and the
agent's own commit landed through the merge queue.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GIT_ENV, SfRunner, git, write_config
from serve_helpers import FAKE_KEY, run_serve, serve_env
from stoneforge.agents.sandbox import probe
from stoneforge.demo import FakeModel, Step
from stoneforge.git.task_clone import ensure_task_clone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not probe().available, reason="bubblewrap does not work here"),
]


def _files(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Digest of every file below `root` (symlinks as their target), minus `skip`."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        if path.is_symlink():
            found[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _local_config(repo: Path) -> list[str]:
    """The repository's own config, without the rerere settings the steward itself turns on."""
    listing = git(repo, "config", "--local", "--list").splitlines()
    return [line for line in listing if not line.startswith("rerere.")]


def _configure(repo: Path, sandbox: str) -> None:
    write_config(
        repo,
        "orchestrator:\n  retryBackoffS: 0.2\n  maxAttempts: 1\n"
        f"agents:\n  sandbox: {sandbox}\n"
        "merge:\n  checks: []\n",
    )


def _escapes(repo: Path, other: Path, main_tip: str) -> list[Step]:
    """One Bash tool call per escape; each prints what happened so the model (and we) see it."""
    hooks = repo / ".hooks-of-the-agent"
    commands = [
        f"git -C {repo} commit --allow-empty -qm 'escape: commit via -C'",
        "cd ../../.. && git commit --allow-empty -qm 'escape: commit from the main checkout'",
        f"git -C {repo} reset --hard HEAD~1",
        f"git -C {repo} update-ref refs/heads/main HEAD",
        f"git update-ref refs/heads/main {main_tip}~1 && git -C {repo} update-ref refs/heads/main "
        f"{main_tip}~1",
        f"x=git; $x push {repo} HEAD:main",
        f"$(echo git) push {repo} HEAD:refs/heads/main",
        f"git -C {repo} config core.hooksPath {hooks}",
        f"echo overwritten > {repo}/README.md",
        f"echo sabotage > {other}/README.md; mkdir -p {other} && echo sabotage > {other}/x.txt",
        f"rm -rf {repo}/.stoneforge/state.db {repo}/.git/hooks",
        'echo "key=[$ANTHROPIC_API_KEY]"; printenv | grep -i key; '
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -a -i anthropic; "
        "cat ~/.claude.json ~/.claude/.credentials.json 2>&1 | head -3",
    ]
    return [Step.bash(c + "; echo exit=$?") for c in commands]


def test_escapes_change_nothing_and_the_agents_own_commit_lands(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised.resolve()
    _configure(repo, "required")
    git(repo, "commit", "--allow-empty", "-qm", "second")  # so HEAD~1 exists for the reset
    main_tip = git(repo, "rev-parse", "main")
    # Another task's checkout, as the orchestrator makes them.
    other = repo / ".stoneforge" / "worktrees" / "t9-other"
    ensure_task_clone(repo, other, "sf/t9-other", start_point="main")
    (other / "wip.txt").write_text("uncommitted work of another task\n")
    task_id = sf("task", "create", "--title", "Contained").stdout.strip()
    fake_model.add_script(
        [
            *_escapes(repo, other, main_tip),
            Step.write(str(repo / "README.md"), "overwritten by the Write tool\n"),
            Step.write("mine.txt", "the agent's own work\n"),
            Step.bash("git add -A && git commit -q -m 'Own work' && echo committed"),
            Step.mcp("complete_task", summary="own work"),
            Step.say("Done."),
        ],
        marker=f"Stoneforge task {task_id}:",
    )
    state = repo / ".stoneforge"
    before_checkout = _files(repo, skip=(state, repo / ".git"))
    before_other = _files(other)
    before_config = _local_config(repo)
    before_hooks = _files(repo / ".git" / "hooks")

    code, out, err = run_serve(repo, fake_model, "--max-concurrent", "1")

    assert code == 0, err
    task = sf("task", "show", task_id, "--json").json()
    assert task["status"] == "merged", task
    # The agent's own commit landed on the target through the merge queue, and nothing else did.
    assert git(repo, "show", "main:mine.txt") == "the agent's own work"
    assert git(repo, "diff", "--name-only", main_tip, "main") == "mine.txt"
    assert "escape" not in git(repo, "log", "--format=%s", "main")
    assert (
        git(repo, "rev-parse", "main~1") == main_tip
        or git(repo, "merge-base", "--is-ancestor", main_tip, "main") == ""
    )
    refs = git(repo, "for-each-ref", "--format=%(refname)").split()
    assert set(refs) <= {"refs/heads/main", f"refs/heads/{task['branch']}"} | {
        r for r in refs if r.startswith(f"refs/stoneforge/recovery/{task_id}/")
    }, refs
    # The main checkout, the repository's config and hooks, and the other task's checkout are
    # byte-for-byte what they were.
    # (the landing brought the agent's file into the main checkout, which has the target out)
    after_checkout = _files(repo, skip=(state, repo / ".git"))
    assert after_checkout.pop("mine.txt") and after_checkout == before_checkout
    assert _local_config(repo) == before_config
    assert _files(repo / ".git" / "hooks") == before_hooks
    assert _files(other) == before_other
    assert (state / "state.db").is_file()
    # What the shell printed went to the model: every escape failed there, and no key.
    seen = "\n".join(r.all_text for r in fake_model.main_requests())
    assert FAKE_KEY not in seen
    assert "key=[]" in seen
    assert "committed" in seen
    assert "Read-only file system" in seen
    # Each attempt is on the task, where a user sees it (`sf task show`, the editor's task
    # tree): a note naming what was tried, redacted; the run itself went on to land.
    tried = [r["tried"] for r in task["refusals"]]
    escapes = [step.tool_calls[0].input["command"] for step in _escapes(repo, other, main_tip)]
    for n in (0, 2, 7, 8):  # commit via -C, reset --hard, config core.hooksPath, > README.md
        assert escapes[n] in tried, (escapes[n], task["refusals"])
    assert all(r["sessionId"] and r["reason"] for r in task["refusals"])
    assert FAKE_KEY not in json.dumps(task)
    shown = sf("task", "show", task_id).stdout
    assert "refused" in shown and "Read-only file system" in " ".join(shown.split())


def _path_without_bwrap(tmp_path: Path) -> str:
    """A PATH with everything of the real one except bubblewrap."""
    bindir = tmp_path / "bin-without-bwrap"
    bindir.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            target = bindir / entry.name
            if entry.name != "bwrap" and not target.exists() and os.access(entry, os.X_OK):
                target.symlink_to(entry)
    assert shutil.which("bwrap", path=str(bindir)) is None
    return str(bindir)


def test_required_without_bubblewrap_refuses_to_run_agents(
    initialised: Path, sf: SfRunner, fake_model: FakeModel, tmp_path: Path
) -> None:
    _configure(initialised, "required")
    sf("task", "create", "--title", "Never dispatched")
    env = {**serve_env(fake_model), "PATH": _path_without_bwrap(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "stoneforge", "serve", "--until-idle"],
        cwd=initialised,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = " ".join(proc.stderr.split())
    assert proc.returncode != 0
    assert "agents.sandbox is 'required'" in said and "bubblewrap (bwrap) is not installed" in said
    assert "apt-get install -y bubblewrap socat" in said
    assert fake_model.main_requests() == []


def test_auto_without_bubblewrap_warns_in_serve_and_doctor(
    initialised: Path, sf: SfRunner, fake_model: FakeModel, tmp_path: Path
) -> None:
    _configure(initialised, "auto")
    env = {**os.environ, **GIT_ENV, "PATH": _path_without_bwrap(tmp_path)}
    doctor = subprocess.run(
        [sys.executable, "-m", "stoneforge", "doctor"],
        cwd=initialised,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = " ".join((doctor.stdout + doctor.stderr).split())
    assert doctor.returncode != 0
    assert "AGENTS RUN UNCONTAINED" in said
    assert "fix: install bubblewrap and socat: `sudo apt-get install -y bubblewrap socat`" in said
    serve = subprocess.run(
        [sys.executable, "-m", "stoneforge", "serve", "--until-idle"],
        cwd=initialised,
        env={**serve_env(fake_model), "PATH": env["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 0, serve.stderr
    assert "WARNING: AGENTS RUN UNCONTAINED" in " ".join(serve.stderr.split())
