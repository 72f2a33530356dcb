"""The git layer: every git operation of Stoneforge goes through this package.

- `repo`: running git, repository root, git version (>= 2.38), target branch resolution
- `slug`: task titles to `sf/<task-id>-<slug>` branches and worktree paths that stay inside
- `worktrees`: one worktree per task; removal that never loses commits
- `snapshot`: recovery refs for uncommitted work; committing leftovers
- `merge`: candidate merge commits, compare-and-swap landing, shared rerere
- `blockers`: what in a checkout of the target would stop it following a landing
- `forecast`: pairwise conflict forecast with one `git merge-tree --stdin`
- `conflicts`: merge-tree output and conflict-marker parsing shared by `merge` and `forecast`

Built on the git CLI (subprocess) rather than GitPython objects: merge-tree has no GitPython verb,
and the rest needs exact control of the environment (temporary index, quarantined object
directory) and of compare-and-swap ref updates.
"""

from stoneforge.git.blockers import CheckoutBlock, checkout_block
from stoneforge.git.conflicts import ConflictedFile, ConflictHunk, LineRange, MergeTreeResult
from stoneforge.git.errors import (
    CheckoutDirty,
    GitError,
    GitLayerError,
    GitVersionError,
    NotARepository,
    NotFastForward,
    RefNotFound,
    TargetMoved,
    UnsafePath,
    WorktreeDirty,
    WorktreeError,
)
from stoneforge.git.forecast import (
    Forecast,
    ForecastBranch,
    ForecastPair,
    forecast,
    format_forecast,
)
from stoneforge.git.merge import (
    CandidateResult,
    LandResult,
    StackItem,
    StackResult,
    WorktreeMergeResult,
    abort_merge,
    build_candidate,
    build_stack,
    enable_shared_rerere,
    land,
    merge_in_worktree,
    merge_tree,
)
from stoneforge.git.repo import (
    GitCheck,
    check_git,
    find_repo_root,
    git_version,
    require_git,
    resolve_commit,
    resolve_target_branch,
    run_git,
    worktree_root,
)
from stoneforge.git.slug import is_valid_ref_name, slugify, task_branch, worktree_path
from stoneforge.git.snapshot import (
    SavedFile,
    Snapshot,
    SnapshotRef,
    apply_snapshot,
    commit_all,
    list_snapshots,
    save_snapshot,
)
from stoneforge.git.worktrees import (
    RemovedWorktree,
    TaskWorktree,
    WorktreeInfo,
    checkout_detached,
    create_task_worktree,
    delete_branch,
    dirty_files,
    ensure_worktree,
    is_merged,
    list_worktrees,
    remove_worktree,
)

__all__ = [
    "CandidateResult",
    "CheckoutBlock",
    "CheckoutDirty",
    "ConflictHunk",
    "ConflictedFile",
    "Forecast",
    "ForecastBranch",
    "ForecastHit",
    "ForecastPair",
    "GitCheck",
    "GitError",
    "GitLayerError",
    "GitVersionError",
    "LandResult",
    "LineRange",
    "MergeTreeResult",
    "NotARepository",
    "NotFastForward",
    "RefNotFound",
    "RemovedWorktree",
    "SavedFile",
    "Snapshot",
    "SnapshotRef",
    "StackItem",
    "StackResult",
    "TargetMoved",
    "TaskWorktree",
    "UnsafePath",
    "WorktreeDirty",
    "WorktreeError",
    "WorktreeInfo",
    "WorktreeMergeResult",
    "abort_merge",
    "apply_snapshot",
    "build_candidate",
    "build_stack",
    "checkout_block",
    "check_git",
    "checkout_detached",
    "commit_all",
    "create_task_worktree",
    "delete_branch",
    "dirty_files",
    "enable_shared_rerere",
    "ensure_worktree",
    "find_repo_root",
    "forecast",
    "format_forecast",
    "git_version",
    "is_merged",
    "is_valid_ref_name",
    "land",
    "list_snapshots",
    "list_worktrees",
    "merge_in_worktree",
    "merge_tree",
    "remove_worktree",
    "require_git",
    "resolve_commit",
    "resolve_target_branch",
    "run_git",
    "save_snapshot",
    "slugify",
    "task_branch",
    "worktree_path",
    "worktree_root",
]
