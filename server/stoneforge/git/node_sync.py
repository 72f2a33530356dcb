"""A task's work moving between the head and a cluster node, only through refs on the remote.

On a node (`orchestrator.backend: ray`) a bare clone of the remote per repository holds the
objects; each task checkout there is a task clone sharing them (`task_clone`), started at exactly
the commit the head pushed. While its session runs, the node pushes the task branch after every
commit and the uncommitted work as a *work-in-progress ref* (`refs/stoneforge/wip/<session>`: a
commit of the worktree's files whose parent is the checkout's HEAD) at every turn end and on an
interval.

The head keeps its own task clone as a *mirror* of the node's checkout: after each pushed commit
it moves to the pushed branch, and when the session ends (or its node is lost) it takes the last
pushed branch and puts the last work-in-progress on top as uncommitted changes. From then on the
worker treats the mirror exactly like a local session's checkout: it commits leftovers, or saves
a crash's work in a recovery ref.

Pushes of the branch are compare-and-swap (`--force-with-lease=<ref>:<expected>`): a node the head
has given up on cannot overwrite what a later session pushed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from stoneforge.git.clone_pool import pool_for
from stoneforge.git.errors import GitError, GitLayerError
from stoneforge.git.remote import NETWORK_TIMEOUT_S
from stoneforge.git.repo import full_branch_ref, identity_env, ref_value, run_git
from stoneforge.git.snapshot import RECOVERY_PREFIX, _worktree_tree
from stoneforge.git.task_clone import ensure_task_clone, hardened_env

WIP_PREFIX = "refs/stoneforge/wip"
#: Task clones a node keeps ready per repository.
POOL_SIZE = 2
#: Where the head's mirror keeps what it fetched from the remote (never a branch of its own).
_FETCHED_BRANCH = "refs/stoneforge/node/branch"
_FETCHED_WIP = "refs/stoneforge/node/wip"


class BranchMoved(GitLayerError):
    """The remote's task branch is not where this node expected: someone else pushed it."""


def wip_ref(session_id: str) -> str:
    return f"{WIP_PREFIX}/{session_id}"


def remote_url(repo: Path | str, remote: str) -> str:
    """The URL of ``remote`` in ``repo``: what nodes, which have no such remote, push to."""
    proc = run_git(["remote", "get-url", remote], repo, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise GitLayerError(f"{repo} has no remote {remote!r} (merge.remote)")
    url = proc.stdout.strip()
    if "://" not in url and ":" not in url.split("/", 1)[0] and not Path(url).is_absolute():
        url = str((Path(repo) / url).resolve())  # a relative path means nothing on a node
    return url


def _git(path: Path | str, args: list[str], *, check: bool = True) -> str:
    return run_git(args, path, env=hardened_env(), check=check, timeout=NETWORK_TIMEOUT_S).stdout


def _remote_refs(path: Path | str, url: str, refs: list[str]) -> dict[str, str]:
    out = _git(path, ["ls-remote", "--", url, *refs])
    found = {}
    for line in out.splitlines():
        oid, _, name = line.partition("\t")
        if name in refs:
            found[name] = oid
    return found


# -- the head's side --------------------------------------------------------------------------


def push_session_start(
    clone: Path | str, url: str, branch: str, known_tip: str | None = None
) -> str:
    """Put the head's task clone on the remote before a node takes the task over; its HEAD.

    ``known_tip`` is where the head last saw the remote's branch (its tracking ref): when the
    remote is still there, one compare-and-swap push (or none) does it. Otherwise, if the remote's
    branch is ahead (a node pushed commits the head never heard of: it died meanwhile), the clone
    fast-forwards to it first, so nothing a node pushed is overwritten. The task's recovery refs
    go along: the task's note may name them.
    """
    ref = full_branch_ref(branch)
    head = _git(clone, ["rev-parse", ref]).strip()
    recovery = recovery_refs(clone)
    if known_tip == head and not recovery:
        return head  # the remote has it (the usual retry or handoff): nothing to push
    specs = [f"{ref}:{ref}", *(f"+{name}:{name}" for name in recovery)]
    push = ["push", "--porcelain", "--no-verify", f"--force-with-lease={ref}:{known_tip or ''}"]
    quick = run_git([*push, "--", url, *specs], clone, env=hardened_env(), check=False)
    if quick.returncode == 0:
        return head
    remote_tip = _remote_refs(clone, url, [ref]).get(ref)  # it moved: see where to
    if remote_tip and remote_tip != head:
        _git(clone, ["fetch", "--quiet", "--no-tags", "--", url, f"+{ref}:{_FETCHED_BRANCH}"])
        ahead = run_git(
            ["merge-base", "--is-ancestor", head, remote_tip],
            clone,
            env=hardened_env(),
            check=False,
        )
        if ahead.returncode == 0:
            _git(clone, ["reset", "--hard", "--quiet", remote_tip])
            head = remote_tip
    lease = f"--force-with-lease={ref}:{remote_tip or ''}"
    _git(clone, ["push", "--quiet", "--no-verify", lease, "--", url, *specs])
    return head


def note_remote_tip(repo: Path | str, remote: str, branch: str, tip: str) -> None:
    """The repository's tracking ref of the branch on ``remote`` is where a node or the head just
    put it (so `merge.pushBranches`' lease-protected push starts from the truth)."""
    run_git(["update-ref", f"refs/remotes/{remote}/{branch}", tip], repo, check=False)


def recovery_refs(clone: Path | str) -> list[str]:
    """The task's recovery refs in its clone (a task clone holds only its own task's)."""
    return _git(clone, ["for-each-ref", "--format=%(refname)", RECOVERY_PREFIX]).split()


@dataclass(frozen=True)
class MirrorState:
    head: str  # the commit the mirror is on
    wip: str | None  # the work-in-progress commit laid on top, if any
    files: int  # how many files differ from HEAD afterwards


def follow_branch(clone: Path | str, url: str, branch: str) -> str:
    """Move the mirror to the node's pushed branch (during a session: it has no changes)."""
    ref = full_branch_ref(branch)
    _git(clone, ["fetch", "--quiet", "--no-tags", "--", url, f"+{ref}:{_FETCHED_BRANCH}"])
    tip = _git(clone, ["rev-parse", _FETCHED_BRANCH]).strip()
    _git(clone, ["checkout", "--quiet", "--force", "-B", branch, tip])
    return tip


def take_node_work(
    clone: Path | str, url: str, branch: str, session_wip: str, *, on_branch: bool = True
) -> MirrorState:
    """Make the mirror what the node's checkout was at its last push: the pushed branch, and the
    last work-in-progress on top as uncommitted changes (only if it was taken at that commit;
    older work is in a commit already). A node that left its branch (``on_branch=False``) has its
    HEAD kept as the mirror's detached HEAD, for the worker's wrong-branch rule."""
    ref = full_branch_ref(branch)
    found = _remote_refs(clone, url, [ref, session_wip])
    specs = [f"+{ref}:{_FETCHED_BRANCH}"]
    if session_wip in found:
        specs.append(f"+{session_wip}:{_FETCHED_WIP}")
    _git(clone, ["fetch", "--quiet", "--no-tags", "--", url, *specs])
    tip = _git(clone, ["rev-parse", _FETCHED_BRANCH]).strip()
    wip = found.get(session_wip)
    parent = _git(clone, ["rev-parse", f"{wip}^"]).strip() if wip else None
    _git(clone, ["checkout", "--quiet", "--force", "-B", branch, tip])
    head = tip
    if wip and parent != tip and not on_branch:
        _git(clone, ["checkout", "--quiet", "--force", "--detach", parent])
        head = parent or tip
    elif wip and parent != tip:
        wip = None  # taken before the last commit: nothing in it that is not committed
    if wip is None:
        return MirrorState(head=head, wip=None, files=0)
    # The work-in-progress tree into the worktree, then the index back to HEAD: its changes are
    # uncommitted again (new files untracked, deletions deleted), as they were on the node.
    _git(clone, ["read-tree", "--reset", "-u", f"{wip}^{{tree}}"])
    _git(clone, ["reset", "--quiet"])
    changed = _git(clone, ["diff", "--name-only", head, f"{wip}^{{tree}}"]).split()
    return MirrorState(head=head, wip=wip, files=len(changed))


def delete_remote_ref(clone: Path | str, url: str, ref: str) -> None:
    """Remove a work-in-progress ref once the head holds its content (best effort)."""
    run_git(["push", "--quiet", "--", url, f":{ref}"], clone, env=hardened_env(), check=False)


# -- the node's side ----------------------------------------------------------------------------


def node_repository(node_dir: Path | str, url: str) -> Path:
    """This node's bare clone of the remote at ``url`` (made on first use)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1]) or "repo"
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    base = Path(node_dir) / "repos" / f"{name.removesuffix('.git')}-{digest}.git"
    if not (base / "HEAD").is_file():
        base.parent.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", str(base)], base.parent)
    return base


def prepare_node_checkout(
    base: Path,
    path: Path,
    url: str,
    *,
    branch: str,
    commit: str,
    target: str,
    recovery: list[str],
    identity: dict[str, str],
) -> bool:
    """The task's checkout on this node at exactly ``commit`` of ``branch``; True if new.

    The base fetches the branch, the target and the task's recovery refs from the remote; the
    checkout (made, or reused from an earlier session of the task here) is reset to ``commit``.
    """
    ref = full_branch_ref(branch)
    target_ref = full_branch_ref(target)
    if identity and _identity_of(base) != identity:  # commits here look like the head's own
        for key, value in identity.items():
            run_git(["config", key, value], base)
    specs = [f"+{ref}:{ref}", f"+{target_ref}:{target_ref}", *(f"+{r}:{r}" for r in recovery)]
    run_git(["fetch", "--quiet", "--no-tags", "--", url, *specs], base, timeout=NETWORK_TIMEOUT_S)
    if ref_value(base, ref) != commit:
        raise BranchMoved(
            f"{url} has {branch} at {ref_value(base, ref)}, not at {commit} where the head put it"
        )
    # A few clones kept ready at the target's tip (filled in the background): taking one is a
    # rename and a checkout of what differs.
    pool = pool_for(base, path.parent, target, size=POOL_SIZE)
    checkout = ensure_task_clone(base, path, branch, start_point=target, pool=pool)
    if not checkout.created:  # an earlier session of the task ran here: the head's truth wins
        _git(path, ["checkout", "--quiet", "--force", "-B", branch, commit])
        _git(path, ["clean", "-f", "-d", "--quiet"])
    for name in recovery:
        # The clone reads the base's objects: naming them is enough.
        _git(path, ["update-ref", name, _git(base, ["rev-parse", name]).strip()])
    return checkout.created


def exclude_untracked(checkout: Path) -> None:
    """Keep what is untracked now (a set-up's output) out of every commit made for the agent."""
    untracked = _git(checkout, ["ls-files", "--others", "--exclude-standard", "--directory"])
    if untracked.split():
        info = Path(_git(checkout, ["rev-parse", "--git-path", "info/exclude"]).strip())
        info = info if info.is_absolute() else checkout / info
        info.parent.mkdir(parents=True, exist_ok=True)
        with info.open("a", encoding="utf-8") as out:
            out.write("".join(f"/{name}\n" for name in untracked.split()))


def _identity_of(base: Path) -> dict[str, str]:
    out = run_git(["config", "--get-regexp", r"^user\.(name|email)$"], base, check=False).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def node_head(checkout: Path) -> tuple[str, bool]:
    """The checkout's HEAD commit, and whether it is on ``refs/heads/*`` of the task."""
    head = _git(checkout, ["rev-parse", "HEAD"]).strip()
    symbolic = run_git(["symbolic-ref", "--quiet", "HEAD"], checkout, check=False).stdout.strip()
    return head, bool(symbolic)


def push_node_branch(checkout: Path, url: str, branch: str, expected: str) -> str:
    """Push the task branch if it moved since ``expected`` (what this node pushed last)."""
    ref = full_branch_ref(branch)
    tip = _git(checkout, ["rev-parse", ref]).strip()
    if tip == expected:
        return tip
    proc = run_git(
        [
            "push",
            "--porcelain",
            "--no-verify",
            f"--force-with-lease={ref}:{expected}",
            "--",
            url,
            f"{ref}:{ref}",
        ],
        checkout,
        env=hardened_env(),
        check=False,
        timeout=NETWORK_TIMEOUT_S,
    )
    if proc.returncode != 0:
        report = f"{proc.stdout}\n{proc.stderr}"
        if "stale info" in report or "rejected" in report:
            raise BranchMoved(f"{url} no longer has {branch} at {expected}: not pushing over it")
        raise GitError(["push", url, ref], proc.returncode, proc.stderr, checkout)
    return tip


def push_wip(checkout: Path, url: str, ref: str, session_id: str) -> tuple[str, str]:
    """Push the checkout's files (uncommitted work included) as a commit on HEAD to ``ref``;
    returns (commit, tree)."""
    env = hardened_env()
    head = _git(checkout, ["rev-parse", "HEAD"]).strip()
    tree = _worktree_tree(checkout, env)
    commit = run_git(
        ["commit-tree", tree, "-p", head, "-m", f"stoneforge: work in progress of {session_id}"],
        checkout,
        env={**identity_env(checkout), **env},
    ).stdout.strip()
    _git(checkout, ["push", "--quiet", "--no-verify", "--force", "--", url, f"{commit}:{ref}"])
    return commit, tree
