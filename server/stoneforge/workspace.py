"""Where a repository's Stoneforge state lives, and setting it up (`sf init`).

Finding the repository from any directory inside it (a linked worktree included), and writing
what `sf init` creates: the config, `.stoneforge/.gitignore`, an exclude entry for a worktree
directory outside `.stoneforge/`. Every write goes through a temporary file and a rename.
"""

from __future__ import annotations

from pathlib import Path

from stoneforge.config import StoneforgeConfig
from stoneforge.errors import NotARepositoryError
from stoneforge.git import repo as git_repo
from stoneforge.git.errors import GitLayerError

STATE_DIR = ".stoneforge"
STATE_DB = "state.db"

# Everything under .stoneforge/ is runtime state except what a team may want to share in git.
STATE_GITIGNORE = """\
# Runtime files of stoneforge (state db, worktrees, agent config dirs) stay out of git.
*
!.gitignore
!config.yaml
!prompts/
!prompts/**
"""


def find_repo_root(start: Path) -> Path:
    """The main worktree of the repository containing ``start`` (also from a linked worktree)."""
    try:
        return git_repo.find_repo_root(start)
    except GitLayerError:
        raise NotARepositoryError(
            f"{start} is not inside a git repository; run `git init` first or cd into one"
        ) from None


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def exclude_worktree_dir(root: Path, config: StoneforgeConfig) -> bool:
    """Keep a worktreeDir outside `.stoneforge/` out of git via .git/info/exclude."""
    try:
        relative = config.orchestrator.worktree_dir(root).resolve().relative_to(root)
    except ValueError:
        return False  # outside the repository: nothing to ignore
    if relative.parts and relative.parts[0] == STATE_DIR:
        return False  # covered by .stoneforge/.gitignore
    exclude = git_repo.common_git_dir(root) / "info" / "exclude"
    pattern = "/" + relative.as_posix().rstrip("/") + "/"
    existing = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
    if pattern in existing.splitlines():
        return False
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a", encoding="utf-8") as handle:
        if existing and not existing.endswith("\n"):
            handle.write("\n")
        handle.write(f"# stoneforge worktrees\n{pattern}\n")
    return True
