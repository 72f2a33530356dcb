"""Task titles to branch names and worktree paths.

A slug keeps only `[a-z0-9-]` (after folding accents to ASCII), so whatever the title holds, the
branch `sf/<task-id>-<slug>` is a valid ref and the worktree `<worktreeDir>/<task-id>-<slug>` is a
single path component. `is_valid_ref_name` mirrors `git check-ref-format` so callers can check
names without spawning git.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from stoneforge.git.errors import UnsafePath

BRANCH_PREFIX = "sf/"
MAX_SLUG_LENGTH = 40
EMPTY_SLUG = "task"

# Letters NFKD does not decompose into ASCII, spelled the way their languages transliterate them.
_FOLD = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "TH",
        "ı": "i",
    }
)
_NON_SLUG = re.compile(r"[^a-z0-9]+")
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Characters `git check-ref-format` refuses anywhere: controls, DEL, space, ~ ^ : ? * [ and \.
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def slugify(title: str, max_length: int = MAX_SLUG_LENGTH) -> str:
    """A short, lowercase, ASCII, dash-separated slug of `title`; never empty.

    >>> slugify("Fix: Ünïcode / paths..and  --flags")
    'fix-unicode-paths-and-flags'
    """
    folded = (
        unicodedata.normalize("NFKD", title.translate(_FOLD))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    slug = _NON_SLUG.sub("-", folded.lower()).strip("-")
    if len(slug) > max_length:
        cut = slug[: max_length + 1]
        # Prefer ending on a word boundary, unless that would throw away most of the slug.
        boundary = cut.rfind("-")
        slug = cut[:boundary] if boundary >= max_length // 2 else cut[:max_length]
        slug = slug.strip("-")
    return slug or EMPTY_SLUG


def check_task_id(task_id: str | int) -> str:
    """The task id as a string, or ValueError when it cannot be part of a ref and a directory."""
    tid = str(task_id)
    if not _TASK_ID.match(tid) or ".." in tid or tid.endswith((".", ".lock")):
        raise ValueError(
            f"task id {tid!r} cannot be used in a branch or directory name "
            "(letters, digits, '.', '_' and '-' only, not starting with '-' or '.')"
        )
    return tid


def task_dir_name(task_id: str | int, title: str) -> str:
    """`<task-id>-<slug>`: the worktree directory name and the branch name after `sf/`."""
    return f"{check_task_id(task_id)}-{slugify(title)}"


def task_branch(task_id: str | int, title: str) -> str:
    """`sf/<task-id>-<slug>`, always a valid branch name."""
    branch = BRANCH_PREFIX + task_dir_name(task_id, title)
    if not is_valid_ref_name(
        branch, branch=True
    ):  # cannot happen for a checked id; belt and braces
        raise ValueError(f"computed branch name {branch!r} is not a valid git branch name")
    return branch


def ensure_inside(base: Path | str, path: Path | str) -> Path:
    """`path` resolved (symlinks followed); UnsafePath unless it lies strictly inside `base`."""
    root = Path(base).resolve()
    resolved = (root / path).resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise UnsafePath(f"{path} resolves to {resolved}, which is not inside {root}")
    return resolved


def worktree_path(worktree_dir: Path | str, task_id: str | int, title: str) -> Path:
    """`<worktree_dir>/<task-id>-<slug>`, resolved; UnsafePath if it would land elsewhere.

    A relative `worktree_dir` is taken relative to the current directory, so pass the configured
    `orchestrator.worktreeDir` joined to the repository root. The result is one path component
    below `worktree_dir`; a symlink planted at that name and pointing elsewhere is refused.
    """
    root = Path(worktree_dir).resolve()
    path = ensure_inside(root, task_dir_name(task_id, title))
    if path.parent != root:
        raise UnsafePath(f"worktree path {path} is not directly inside {root}")
    return path


def is_valid_ref_name(name: str, *, branch: bool = False, allow_onelevel: bool = False) -> bool:
    """What `git check-ref-format [--branch | --allow-onelevel] <name>` would accept.

    `branch=True` checks a short branch name (as `--branch` does: `refs/heads/<name>` must be valid
    and the name may not start with `-`); `@{-N}` shorthands are not expanded and count as invalid.
    """
    if branch:
        if name.startswith("-") or name == "HEAD":
            return False
        return is_valid_ref_name(f"refs/heads/{name}")
    if not name or name == "@" or "@{" in name or ".." in name:
        return False
    if _BAD_REF_CHARS.search(name) or name.endswith(".") or name.startswith("/"):
        return False
    components = name.split("/")
    if not allow_onelevel and len(components) < 2:
        return False
    for comp in components:
        if not comp or comp.startswith(".") or comp.endswith(".lock"):
            return False
    return True
