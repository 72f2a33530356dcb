"""Conflict forecast: which pairs among the active branches and the target would conflict, where.

Every pair (each branch against the target, each branch against each other branch) is merged with
`git merge-tree --write-tree`, all of them in ONE git process through `--stdin`, with no checkout.
Objects merge-tree writes (merged trees, blobs with conflict markers) go to a throwaway object
directory (GIT_OBJECT_DIRECTORY, with the repository's objects as an alternate), so forecasting
every few seconds leaves no garbage in the repository. For conflicting pairs the conflicted files'
blobs are then read in one `cat-file --batch` to find the marker blocks and map them to line
ranges in each side's file.

Output format of `merge-tree --stdin -z --messages` on git 2.38/2.39, per merge: status (`1` clean,
`0` conflicted), tree OID, conflicted stage entries, empty field, messages, empty field. We pass
`--messages` explicitly: without it git decides per merge whether to print messages, and then the
stream cannot be split reliably.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stoneforge.git.conflicts import (
    ConflictedFile,
    LineRange,
    MergeTreeResult,
    describe_conflicts,
    parse_merge_tree,
)
from stoneforge.git.errors import GitError, RefNotFound
from stoneforge.git.repo import git_env, git_path, resolve_commits, run_git


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ForecastBranch(_Model):
    label: str
    ref: str
    commit: str


class ForecastPair(_Model):
    """One merge of `ours` and `theirs` (labels). For pairs with the target, ours is the target."""

    ours: str
    theirs: str
    ours_commit: str
    theirs_commit: str
    conflict: bool
    files: list[ConflictedFile] = Field(default_factory=list)
    error: str | None = None  # git could not merge this pair (e.g. unrelated histories)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


class ForecastHit(_Model):
    """A predicted conflict seen from one side: where it sits in that side's own file."""

    path: str
    other: str  # label of the other side of the pair
    kinds: list[str]
    lines: list[LineRange]  # in this side's version of `path` (empty: whole file / no markers)


class Forecast(_Model):
    target: str  # label of the target (its branch name)
    target_commit: str
    branches: list[ForecastBranch]
    pairs: list[ForecastPair]
    errors: dict[str, str] = Field(default_factory=dict)  # label -> why it was left out
    duration_s: float = 0.0

    @property
    def conflicts(self) -> list[ForecastPair]:
        return [p for p in self.pairs if p.conflict]

    def conflicts_for(self, label: str) -> list[ForecastPair]:
        """Conflicting pairs that involve `label` (a branch label or the target)."""
        return [p for p in self.conflicts if label in (p.ours, p.theirs)]

    def hits_for(self, label: str) -> list[ForecastHit]:
        """Every predicted conflict touching `label`, with line ranges in `label`'s files.

        What the language server turns into diagnostics: for the user's checkout ask for the
        target's label, for a task worktree ask for its branch label.
        """
        hits: list[ForecastHit] = []
        for p in self.conflicts_for(label):
            mine_is_ours = p.ours == label
            other = p.theirs if mine_is_ours else p.ours
            for f in p.files:
                ranges = [h.ours if mine_is_ours else h.theirs for h in f.hunks]
                hits.append(
                    ForecastHit(
                        path=f.path,
                        other=other,
                        kinds=f.kinds,
                        lines=[r for r in ranges if r is not None],
                    )
                )
        return hits

    def to_json(self) -> dict:
        """JSON-able dict with camelCase keys (what `sf forecast --json` prints)."""
        return self.model_dump(mode="json", by_alias=True)


def forecast(repo_path: Path | str, target: str, branches: Mapping[str, str]) -> Forecast:
    """Predict conflicts among `branches` (label -> branch or commit) and `target`.

    Branches that do not resolve are left out and named in `errors` rather than failing the
    whole forecast (a task branch may be deleted while we run).
    """
    started = time.perf_counter()
    repo = Path(repo_path)
    commits = resolve_commits(repo, [target, *branches.values()])
    target_commit = commits[target]
    if target_commit is None:
        raise RefNotFound(f"target {target!r} does not name a commit in {repo}")
    resolved: list[ForecastBranch] = []
    errors: dict[str, str] = {}
    for label, ref in branches.items():
        commit = commits.get(ref)
        if label == target:
            errors[label] = f"label {label!r} is the target's own label"
        elif commit is None:
            errors[label] = f"{ref!r} does not name a commit"
        else:
            resolved.append(ForecastBranch(label=label, ref=ref, commit=commit))
    nodes = [ForecastBranch(label=target, ref=target, commit=target_commit), *resolved]
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :]]
    with _quarantine(repo) as env:
        results = _merge_many(repo, [(a.commit, b.commit) for a, b in pairs], env)
        conflicted = [r for r in results if isinstance(r, MergeTreeResult) and not r.clean]
        describe_conflicts(repo, conflicted, env=env, with_text=False)
    out: list[ForecastPair] = []
    for (a, b), res in zip(pairs, results, strict=True):
        common = dict(ours=a.label, theirs=b.label, ours_commit=a.commit, theirs_commit=b.commit)
        if isinstance(res, str):
            out.append(ForecastPair(conflict=False, error=res, **common))
        else:
            out.append(ForecastPair(conflict=not res.clean, files=res.conflicts, **common))
    return Forecast(
        target=target,
        target_commit=target_commit,
        branches=resolved,
        pairs=out,
        errors=errors,
        duration_s=round(time.perf_counter() - started, 4),
    )


@contextmanager
def _quarantine(repo: Path) -> Iterator[dict[str, str]]:
    """Env sending new objects to a temporary object directory that is deleted afterwards."""
    objects = git_path(repo, "objects").resolve()
    tmp = tempfile.mkdtemp(prefix="sf-forecast-", dir=_scratch_dir())
    try:
        # The repository's own objects/info/alternates are still followed from there.
        yield {"GIT_OBJECT_DIRECTORY": tmp, "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _scratch_dir() -> str | None:
    # merge-tree writes hundreds of small loose objects; on a RAM disk that is ~5x faster than
    # on a disk-backed /tmp (measured: 0.25 s vs 1.5 s for 210 merges), and they are thrown away.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return str(shm)
    return None  # the platform's temporary directory


def _merge_many(
    repo: Path, pairs: list[tuple[str, str]], env: Mapping[str, str]
) -> list[MergeTreeResult | str]:
    """merge-tree of every pair in one process; per-pair fallback if the batch dies."""
    if not pairs:
        return []
    args = ["merge-tree", "--write-tree", "--stdin", "--messages", "-z"]
    data = "".join(f"{a} {b}\n" for a, b in pairs).encode()
    proc = subprocess.run(
        ["git", *args], cwd=repo, input=data, capture_output=True, env=git_env(env), check=False
    )
    if proc.returncode == 0:
        fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
        results: list[MergeTreeResult | str] = []
        pos = 0
        for _ in pairs:
            status = fields[pos]
            if status not in ("0", "1"):
                raise GitError(args, 0, f"unexpected merge-tree --stdin output at {status!r}", repo)
            res, pos = parse_merge_tree(fields, pos + 1, clean=status == "1")
            pos += 1  # the empty field that ends each merge in --stdin mode
            results.append(res)
        return results
    # One bad pair (e.g. unrelated histories) kills the whole batch in git 2.39: isolate it.
    return [_merge_one(repo, a, b, env) for a, b in pairs]


def _merge_one(repo: Path, a: str, b: str, env: Mapping[str, str]) -> MergeTreeResult | str:
    proc = run_git(
        ["merge-tree", "--write-tree", "--messages", "-z", a, b], repo, env=env, check=False
    )
    if proc.returncode not in (0, 1):
        return proc.stderr.strip() or f"git merge-tree exited with {proc.returncode}"
    res, _ = parse_merge_tree(proc.stdout.split("\0"), 0, clean=proc.returncode == 0)
    return res


# --- human output ----------------------------------------------------------------------------


def _ranges(f: ConflictedFile) -> str:
    spans = []
    for h in f.hunks:
        r = h.ours if h.ours is not None else h.merged
        spans.append(f"{r.start}" if r.count <= 1 else f"{r.start}-{r.end}")
    return f" lines {', '.join(spans)}" if spans else ""


def format_forecast(fc: Forecast) -> str:
    """Plain-text report for `sf forecast` (line ranges are in the ours side's file)."""
    n_branches = len(fc.branches)
    conflicts = fc.conflicts
    lines = [
        f"Conflict forecast: {n_branches} branch{'es' if n_branches != 1 else ''} and "
        f"{fc.target} ({fc.target_commit[:10]}), {len(fc.pairs)} pair"
        f"{'s' if len(fc.pairs) != 1 else ''} checked in {fc.duration_s:.2f}s: "
        f"{len(conflicts)} would conflict."
    ]
    for p in conflicts:
        lines.append(f"  {p.ours} <-> {p.theirs}:")
        for f in p.files:
            kinds = ", ".join(f.kinds) or "conflict"
            lines.append(f"    {f.path}{_ranges(f)} ({kinds})")
    for p in fc.pairs:
        if p.error:
            lines.append(f"  {p.ours} <-> {p.theirs}: not checked: {p.error}")
    for label, why in fc.errors.items():
        lines.append(f"  {label}: left out: {why}")
    if not conflicts and not fc.errors:
        lines.append("  No conflicts expected.")
    return "\n".join(lines)
