"""Branch tips read from git's ref files, without starting a git process.

Dispatch is timed, and on a busy machine one `git` process costs 3-10 ms. For the files ref
backend, git's own lookup of a full ref name is: the loose file `<git dir>/<ref>` when it exists,
else its line in `packed-refs` (gitrepository-layout(5)); ref updates replace either file by a
rename, so a read sees the old value or the new one. Whatever this module cannot answer for
certain (the reftable backend, a symbolic ref, an unreadable file) it leaves to git: `None` from
`read_refs` means "ask git".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stoneforge.git.errors import RefNotFound
from stoneforge.git.repo import OID, full_branch_ref, repository_git_dir, resolve_commits


def read_refs(git_dir: Path, refs: Sequence[str]) -> dict[str, str | None] | None:
    """The values of full ref names (`refs/heads/main`) in ``git_dir`` (a repository's common
    git directory), None for one that does not exist; or None when git must be asked."""
    if (git_dir / "reftable").exists():
        return None
    values: dict[str, str | None] = {}
    packed: str | None = None
    for ref in refs:
        parts = ref.split("/")
        if parts[0] != "refs" or len(parts) < 3 or any(p in ("", ".", "..") for p in parts):
            return None
        try:
            text: str | None = (git_dir / ref).read_text()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            text = None  # not a loose ref: packed, or none
        except OSError:
            return None
        if text is not None:
            oid = text.strip()
            if not OID.fullmatch(oid):
                return None  # a symbolic ref ("ref: ..."), or not a ref git wrote
            values[ref] = oid
            continue
        if packed is None:
            try:
                packed = (git_dir / "packed-refs").read_text()
            except FileNotFoundError:
                packed = ""
            except OSError:
                return None
        values[ref] = _packed_value(packed, ref)
    return values


def _packed_value(packed: str, ref: str) -> str | None:
    """``ref``'s value in the text of `packed-refs` (lines `<oid> <ref>`; `#` and `^` lines are a
    header and peeled tags)."""
    for line in packed.splitlines():
        oid, _, name = line.partition(" ")
        if name == ref and OID.fullmatch(oid):
            return oid
    return None


def branch_commits(repo: Path | str, refs: Sequence[str]) -> dict[str, str | None]:
    """Commit OIDs of full branch ref names in ``repo``, None for one that does not exist: from
    the ref files where they can say, else one `git cat-file` for all. (git keeps a branch at a
    commit: it refuses to point `refs/heads/*` at anything else.)"""
    if not all(ref.startswith("refs/heads/") for ref in refs):
        return resolve_commits(repo, refs)
    found = read_refs(repository_git_dir(Path(repo).resolve()), refs)
    return found if found is not None else resolve_commits(repo, refs)


def branch_tip(repo: Path | str, branch: str) -> str:
    """The commit ``branch`` (`main` or `refs/heads/main`) is at; RefNotFound if none."""
    ref = full_branch_ref(branch)
    tip = branch_commits(repo, [ref])[ref]
    if tip is None:
        raise RefNotFound(f"{branch!r} does not name a commit in {repo}")
    return tip
