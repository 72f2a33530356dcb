"""Running git, finding the repository, checking git's version and resolving the target branch.

Every git command of the package goes through `run_git`: it pins the locale (messages are parsed),
never prompts, and drops the repository-scoped environment variables (GIT_DIR, GIT_INDEX_FILE, ...)
a parent process such as a git hook may have set, so a command always acts on the `cwd` it is given.
It also drops credentials (`redact.scrub_env`): hooks that our git calls run (husky and co.) get
the same environment as the merge checks, never an API key.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel

from stoneforge.git.errors import GitError, GitVersionError, NotARepository, RefNotFound
from stoneforge.redact import scrub_env

log = logging.getLogger("stoneforge.git")

#: A full object name: SHA-1 or SHA-256, as git writes it in ref files and HEAD.
OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
MIN_GIT_VERSION: tuple[int, int, int] = (2, 38, 0)
DEFAULT_TARGET_BRANCH = "main"

# `git rev-parse --local-env-vars`: inherited values would redirect commands to another repository,
# index or object directory. Callers that need one (temporary index, quarantine) pass it in `env`.
_LOCAL_ENV_VARS = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
)

# Used only when the user has no identity configured, so unattended commits never fail on it.
_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "Stoneforge",
    "GIT_AUTHOR_EMAIL": "stoneforge@localhost",
    "GIT_COMMITTER_NAME": "Stoneforge",
    "GIT_COMMITTER_EMAIL": "stoneforge@localhost",
}


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every git child runs with (see the module docstring)."""
    env = {k: v for k, v in scrub_env().items() if k not in _LOCAL_ENV_VARS}
    env["LC_ALL"] = "C"  # English messages: CONFLICT lines and errors are parsed
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_EDITOR"] = "true"  # never wait on an editor
    if extra:
        env.update(extra)
    return env


def run_git(
    args: Sequence[str],
    cwd: Path | str,
    input: str | bytes | None = None,
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    text: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run `git <args>` in `cwd` and return the completed process.

    With `text=True` (default) stdout/stderr are str, decoded as UTF-8 with surrogateescape so
    arbitrary path bytes round-trip; with `text=False` they are bytes. `check=True` raises
    `GitError` (command, exit code, stderr) on a non-zero exit.
    """
    data = input.encode("utf-8", "surrogateescape") if isinstance(input, str) else input
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=data,
            capture_output=True,
            env=git_env(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():
            raise GitError(args, -1, f"working directory does not exist: {cwd}", cwd) from exc
        raise GitVersionError("git is not installed or not on PATH") from exc
    stdout: str | bytes = proc.stdout
    stderr_text = proc.stderr.decode("utf-8", "replace")
    if text:
        stdout = proc.stdout.decode("utf-8", "surrogateescape")
    if check and proc.returncode != 0:
        out = stdout if isinstance(stdout, str) else stdout.decode("utf-8", "replace")
        raise GitError(args, proc.returncode, stderr_text, cwd, out)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, stdout, stderr_text if text else proc.stderr
    )


def git_out(args: Sequence[str], cwd: Path | str) -> str:
    """stdout of a successful git command, without the trailing newline."""
    return run_git(args, cwd).stdout.rstrip("\n")


# --- version ---------------------------------------------------------------------------------


def parse_git_version(output: str) -> tuple[int, int, int]:
    """`git version 2.39.5` (also `2.39.5.windows.1`, `2.40.0-rc1`) -> (2, 39, 5)."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", output)
    if not m:
        raise GitVersionError(f"cannot read the git version from {output.strip()!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@lru_cache(maxsize=1)
def git_version() -> tuple[int, int, int]:
    """The installed git's version, e.g. (2, 39, 5). Raises GitVersionError when git is missing."""
    if shutil.which("git") is None:
        raise GitVersionError("git is not installed or not on PATH; Stoneforge needs git >= 2.38")
    return parse_git_version(git_out(["version"], cwd=os.getcwd()))


def require_git(minimum: tuple[int, int, int] = MIN_GIT_VERSION) -> tuple[int, int, int]:
    """Return git's version, or raise GitVersionError when it is older than `minimum`.

    2.38 is the first release with `git merge-tree --write-tree` (and its `--stdin`), which the
    conflict forecast and the candidate merge commits are built on.
    """
    version = git_version()
    if version < minimum:
        have = ".".join(map(str, version))
        need = ".".join(map(str, minimum[:2]))
        raise GitVersionError(
            f"git {have} is too old: Stoneforge needs git >= {need} for "
            "`git merge-tree --write-tree`; please upgrade git"
        )
    return version


class GitCheck(BaseModel):
    """What `sf doctor` reports about git."""

    ok: bool
    version: str | None  # "2.39.5"; None when git is missing
    minimum: str
    message: str


def check_git(minimum: tuple[int, int, int] = MIN_GIT_VERSION) -> GitCheck:
    """Non-raising version of `require_git`, for `sf doctor`."""
    need = ".".join(map(str, minimum[:2]))
    try:
        version = git_version()
    except GitVersionError as exc:
        return GitCheck(ok=False, version=None, minimum=need, message=str(exc))
    have = ".".join(map(str, version))
    try:
        require_git(minimum)
    except GitVersionError as exc:
        return GitCheck(ok=False, version=have, minimum=need, message=str(exc))
    return GitCheck(ok=True, version=have, minimum=need, message=f"git {have} (>= {need}): ok")


# --- repository paths ------------------------------------------------------------------------


def worktree_root(path: Path | str = ".") -> Path:
    """Top level of the worktree containing `path` (a task worktree gives its own root)."""
    p = Path(path)
    try:
        out = git_out(["rev-parse", "--show-toplevel"], cwd=p)
    except GitError as exc:
        raise NotARepository(f"{p.resolve()} is not inside a git working tree") from exc
    if not out:
        raise NotARepository(f"{p.resolve()} is not inside a git working tree (bare repository?)")
    return Path(out).resolve()


def common_git_dir(path: Path | str) -> Path:
    """The git directory shared by all worktrees (`.git` of the main worktree)."""
    try:
        out = git_out(["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=path)
    except GitError as exc:
        raise NotARepository(f"{Path(path).resolve()} is not inside a git repository") from exc
    return Path(out).resolve()


@lru_cache(maxsize=16)
def repository_git_dir(repo: Path) -> Path:
    """`common_git_dir` of a repository's resolved root, asked of git once per process: it
    does not move while the process runs, and the dispatch path reads it (no git process)."""
    return common_git_dir(repo)


def find_repo_root(path: Path | str = ".") -> Path:
    """Top level of the repository's main worktree, from anywhere inside it or any linked worktree.

    `.stoneforge/` lives there, so `sf` run inside a task worktree or task clone still finds the
    project.
    """
    here = worktree_root(path)  # also rejects bare repositories and non-repositories
    # A task clone (git/task_clone.py) names the repository it was made for.
    owner = run_git(["config", "--local", "--get", "stoneforge.repository"], here, check=False)
    if owner.returncode == 0 and Path(owner.stdout.strip(), ".git").exists():
        return Path(owner.stdout.strip()).resolve()
    listing = run_git(["worktree", "list", "--porcelain", "-z"], here).stdout
    first = listing.split("\0", 1)[0]  # the main worktree is always listed first
    if first.startswith("worktree "):
        main = Path(first[len("worktree ") :])
        if (main / ".git").exists():
            return main.resolve()
    return here


def git_path(worktree: Path | str, name: str) -> Path:
    """Absolute `git rev-parse --git-path <name>` (per-worktree or common, as git decides)."""
    out = git_out(["rev-parse", "--path-format=absolute", "--git-path", name], cwd=worktree)
    return Path(out)


# --- refs and branches -----------------------------------------------------------------------


def resolve_commit(repo: Path | str, rev: str) -> str:
    """Full commit OID of `rev` (branch, ref, tag or OID); RefNotFound when it does not resolve."""
    proc = run_git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        repo,
        check=False,
    )
    if proc.returncode != 0:
        raise RefNotFound(f"{rev!r} does not name a commit in {repo}")
    return proc.stdout.strip()


#: Pauses before a git command that another git process of the repository was in the way of is
#: tried again (about 3.4 s in all).
IN_THE_WAY_PAUSES_S = (0.1, 0.25, 0.5, 1.0, 1.5)
#: What git says then: `git worktree add` (a steward's or reviewer's checkout) writes a HEAD of
#: zeros first, which fails every fetch's connectivity check meanwhile ("bad object
#: worktrees/.../HEAD", "did not send all necessary objects"); a ref another process is updating
#: is locked ("cannot lock ref ...: File exists").
_IN_THE_WAY = ("bad object", "did not send all necessary objects", "cannot lock ref")


def run_git_past_others(
    args: Sequence[str],
    cwd: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """`run_git`, tried again for a moment when another git process of the repository was in
    the way (see `_IN_THE_WAY`); any other failure raises at once."""
    for pause in IN_THE_WAY_PAUSES_S:
        try:
            return run_git(args, cwd, env=env, timeout=timeout)
        except GitError as exc:
            if not any(sign in exc.stderr for sign in _IN_THE_WAY):
                raise
            log.info("git %s met another git process, trying again: %s", args[0], exc.stderr)
        time.sleep(pause)
    return run_git(args, cwd, env=env, timeout=timeout)


def resolve_commits(repo: Path | str, revs: Sequence[str]) -> dict[str, str | None]:
    """Commit OIDs of many revisions through one `git cat-file --batch-check`; None if unknown."""
    wanted = [r for r in dict.fromkeys(revs) if r and "\n" not in r]
    result: dict[str, str | None] = {r: None for r in revs}
    if not wanted:
        return result
    out = run_git(
        ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        repo,
        input="".join(f"{r}^{{commit}}\n" for r in wanted),
    ).stdout.splitlines()
    for rev, line in zip(wanted, out, strict=True):
        oid, _, kind = line.partition(" ")
        result[rev] = oid if kind == "commit" else None
    return result


def ref_value(repo: Path | str, ref: str) -> str | None:
    """Current OID of a full ref name, or None when it does not exist."""
    proc = run_git(["rev-parse", "--verify", "--quiet", ref], repo, check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def branch_exists(repo: Path | str, branch: str) -> bool:
    return ref_value(repo, f"refs/heads/{branch}") is not None


def full_branch_ref(branch: str) -> str:
    """`main` -> `refs/heads/main`; a full `refs/...` name is returned unchanged."""
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


def short_branch(ref: str) -> str:
    return ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else ref


def resolve_target_branch(repo: Path | str, configured: str | None = DEFAULT_TARGET_BRANCH) -> str:
    """The branch the merge queue lands on (short name, e.g. `main`).

    `configured` is `merge.targetBranch`. When it exists it wins. When it is the default `main` and
    no `main` exists, fall back to the repository's default branch: the branch `origin/HEAD` names,
    else `master`, else the branch checked out in the main worktree. A configured branch other than
    the default that does not exist is an error, not something to guess around.
    """
    name = short_branch(configured or DEFAULT_TARGET_BRANCH)
    if branch_exists(repo, name):
        return name
    if name != DEFAULT_TARGET_BRANCH:
        raise RefNotFound(
            f"merge.targetBranch is {name!r}, but no branch {name!r} exists in {repo}; "
            "create it or change merge.targetBranch in .stoneforge/config.yaml"
        )
    origin_head = run_git(
        ["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"], repo, check=False
    ).stdout.strip()
    if origin_head.startswith("refs/remotes/origin/"):
        candidate = origin_head[len("refs/remotes/origin/") :]
        if branch_exists(repo, candidate):
            return candidate
    if branch_exists(repo, "master"):
        return "master"
    main_root = find_repo_root(repo)
    head = run_git(["symbolic-ref", "--quiet", "HEAD"], main_root, check=False).stdout.strip()
    if head.startswith("refs/heads/") and not head.startswith("refs/heads/sf/"):
        candidate = short_branch(head)
        if branch_exists(repo, candidate):  # false on an unborn branch (no commits yet)
            return candidate
    raise RefNotFound(
        f"no target branch in {repo}: there is no 'main', no origin/HEAD, no 'master' and the "
        "main worktree has no branch with commits; set merge.targetBranch in "
        ".stoneforge/config.yaml"
    )


# --- identity --------------------------------------------------------------------------------


def identity_env(repo: Path | str) -> dict[str, str]:
    """Env overrides giving commits an identity, only for the parts the user has not configured."""
    env: dict[str, str] = {}
    for role in ("AUTHOR", "COMMITTER"):
        if run_git(["var", f"GIT_{role}_IDENT"], repo, check=False).returncode != 0:
            env[f"GIT_{role}_NAME"] = os.environ.get(
                f"GIT_{role}_NAME", _FALLBACK_IDENTITY[f"GIT_{role}_NAME"]
            )
            env[f"GIT_{role}_EMAIL"] = os.environ.get(
                f"GIT_{role}_EMAIL", _FALLBACK_IDENTITY[f"GIT_{role}_EMAIL"]
            )
    return env
