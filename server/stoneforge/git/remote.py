"""A target branch that lives on a remote: fetch it, land on it by compare-and-swap, follow it.

Landing on a remote is `git push --atomic --force-with-lease=<ref>:<expected-old> <remote>
<candidate>:<ref>`: the remote moves only if it still points where the candidate was built and
checked, so someone else's push is never overwritten (`TargetMoved`), and a refusal by the remote
(a hook, permissions) is a `PushRefused` with the remote's own words. Authentication is git's own
(ssh agent, credential helper): nothing here handles a password or token.

The local target branch follows the remote by fast-forward only, and never touches a checkout
with changes (`git.merge.land` refuses a dirty checkout).
"""

from __future__ import annotations

from pathlib import Path

from stoneforge.git.errors import GitError, GitLayerError, TargetMoved
from stoneforge.git.repo import full_branch_ref, ref_value, run_git, run_git_past_others

#: How long one fetch or push may take before it counts as failed (a hung network).
NETWORK_TIMEOUT_S = 120.0


class PushRefused(GitLayerError):
    """The remote refused a push for a reason other than having moved (a hook, permissions)."""

    def __init__(self, remote: str, ref: str, detail: str) -> None:
        self.remote = remote
        self.ref = ref
        self.detail = detail.strip()
        super().__init__(f"{remote} refused the push to {ref}: {self.detail}")


def tracking_ref(remote: str, branch: str) -> str:
    return f"refs/remotes/{remote}/{branch}"


def fetch_branch(repo: Path | str, remote: str, branch: str) -> str:
    """Fetch ``branch`` from ``remote`` into its remote-tracking ref; return the remote's tip."""
    ref = tracking_ref(remote, branch)
    run_git_past_others(  # a checkout being added to the repository fails a fetch meanwhile
        ["fetch", "--quiet", "--no-tags", remote, f"+{full_branch_ref(branch)}:{ref}"],
        repo,
        timeout=NETWORK_TIMEOUT_S,
    )
    tip = ref_value(repo, ref)
    if tip is None:
        raise GitLayerError(f"{remote} has no branch {branch} (fetched into {ref})")
    return tip


def push_compare_and_swap(
    repo: Path | str, remote: str, branch: str, new: str, expected_old: str
) -> None:
    """Move ``branch`` on ``remote`` from ``expected_old`` to ``new``, or raise and change nothing.

    ``TargetMoved``: the remote branch is no longer at ``expected_old``. ``PushRefused``: the
    remote said no for another reason.
    """
    ref = full_branch_ref(branch)
    proc = run_git(
        [
            "push",
            "--porcelain",
            "--atomic",
            f"--force-with-lease={ref}:{expected_old}",
            remote,
            f"{new}:{ref}",
        ],
        repo,
        check=False,
        timeout=NETWORK_TIMEOUT_S,
    )
    if proc.returncode == 0:
        # Keep the tracking ref current: the next candidate is built on what we just pushed.
        run_git(["update-ref", tracking_ref(remote, branch), new], repo, check=False)
        return
    report = f"{proc.stdout}\n{proc.stderr}"
    if "stale info" in report or "fetch first" in report or "non-fast-forward" in report:
        actual = _remote_tip(repo, remote, branch)
        raise TargetMoved(f"{remote}/{branch}", expected_old, actual)
    if "[rejected]" in report or "[remote rejected]" in report or "declined" in report:
        raise PushRefused(remote, ref, _refusal(report))
    raise GitError(["push", remote, f"{new}:{ref}"], proc.returncode, proc.stderr, repo)


def push_branch(repo: Path | str, remote: str, branch: str) -> None:
    """Publish a task branch (ours: its remote copy follows ours, rewinds included)."""
    ref = full_branch_ref(branch)
    run_git(
        ["push", "--quiet", "--force-with-lease", remote, f"{ref}:{ref}"],
        repo,
        timeout=NETWORK_TIMEOUT_S,
    )


def delete_remote_branch(repo: Path | str, remote: str, branch: str) -> bool:
    """Remove a (merged) task branch from the remote; False when it was not there."""
    proc = run_git(
        ["push", "--quiet", remote, f":{full_branch_ref(branch)}"],
        repo,
        check=False,
        timeout=NETWORK_TIMEOUT_S,
    )
    return proc.returncode == 0


def _remote_tip(repo: Path | str, remote: str, branch: str) -> str | None:
    proc = run_git(
        ["ls-remote", remote, full_branch_ref(branch)], repo, check=False, timeout=NETWORK_TIMEOUT_S
    )
    return proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout.strip() else None


def _refusal(report: str) -> str:
    """The remote's own words: hook output lines ("remote: ...") and the rejection reason."""
    lines = [line.removeprefix("remote:").strip() for line in report.splitlines()]
    keep = [
        line
        for line in lines
        if line and not line.startswith(("To ", "Done", "error: failed to push"))
    ]
    return "; ".join(keep[-6:]) or "no reason given"


def adopt_branch(repo: Path | str, name: str, *, target: str) -> str:
    """An existing branch a task should continue: local ``name``, or made from a remote's copy.

    Raises ``GitLayerError`` naming what is wrong: not a valid branch name, the target itself,
    or no such branch here or on any remote (fetch first).
    """
    short = name.removeprefix("refs/heads/")
    if run_git(["check-ref-format", "--branch", short], repo, check=False).returncode != 0:
        raise GitLayerError(f"{name!r} is not a valid branch name")
    if short == target:
        raise GitLayerError(f"a task cannot work on the target branch {target} itself")
    if ref_value(repo, full_branch_ref(short)) is not None:
        return short
    remotes = run_git(
        ["for-each-ref", "--format=%(refname)", f"refs/remotes/*/{short}"], repo
    ).stdout.split()
    if not remotes:
        raise GitLayerError(
            f"no branch {short} here or on a remote (run `git fetch` if it is new on the remote)"
        )
    run_git(["branch", "--no-track", short, remotes[0]], repo)
    return short
