"""Parsing `git merge-tree --write-tree -z --messages` output and the conflict markers it writes.

Shared by the candidate builder (`merge.py`) and the forecast (`forecast.py`). merge-tree writes the
merged tree with conflict markers inside conflicted files, so the hunks are read from that tree
(no checkout); the stage blobs (1 base, 2 ours, 3 theirs) listed for each conflicted path let us
map every conflict block back to line ranges in each side's own version of the file.
"""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stoneforge.git.errors import GitError
from stoneforge.git.repo import git_env

MARKER_SIZE = 7
# Side mapping runs difflib on whole files; past this size we give merged-file ranges only.
MAX_MAP_LINES = 20_000


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class LineRange(_Model):
    """Lines `start` .. `start + count - 1` (1-based). `count == 0`: an empty range just before
    line `start` (where the side has nothing, e.g. it deleted those lines)."""

    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count - 1


class ConflictHunk(_Model):
    """One `<<<<<<< ... >>>>>>>` block of a conflicted file."""

    merged: LineRange  # the block in the merged file, marker lines included
    ours: LineRange | None = None  # the same lines in the ours side's version of the file
    theirs: LineRange | None = None  # ... and in the theirs side's version
    ours_text: str | None = None
    base_text: str | None = None  # only with merge.conflictStyle diff3/zdiff3
    theirs_text: str | None = None


class StageEntry(_Model):
    mode: str
    oid: str
    stage: int  # 1 base, 2 ours, 3 theirs


class ConflictedFile(_Model):
    path: str
    kinds: list[str] = Field(default_factory=list)  # content, add/add, rename/delete, ...
    messages: list[str] = Field(default_factory=list)
    stages: list[StageEntry] = Field(default_factory=list)
    hunks: list[ConflictHunk] = Field(default_factory=list)
    ours_hunks: list[LineRange] = Field(default_factory=list)  # ours' changes vs the merge base
    theirs_hunks: list[LineRange] = Field(default_factory=list)  # theirs' changes vs the base
    binary: bool = False

    def stage(self, n: int) -> StageEntry | None:
        return next((s for s in self.stages if s.stage == n), None)


class MergeMessage(_Model):
    paths: list[str]
    type: str
    message: str


class MergeTreeResult(_Model):
    """One merge as `git merge-tree --write-tree` reported it."""

    clean: bool
    tree: str
    conflicts: list[ConflictedFile] = Field(default_factory=list)
    messages: list[MergeMessage] = Field(default_factory=list)

    @property
    def conflicted_paths(self) -> list[str]:
        return [c.path for c in self.conflicts]


# --- merge-tree output -----------------------------------------------------------------------


def parse_merge_tree(fields: Sequence[str], pos: int, clean: bool) -> tuple[MergeTreeResult, int]:
    """Parse one merge from NUL-split `merge-tree --write-tree -z --messages` output.

    `fields[pos]` is the tree OID. Then come conflicted-file entries (`<mode> <oid> <stage>`,
    tab, path; or bare paths with `--name-only`) up to an empty field, then messages, each
    `<n>`, n paths, type, text, up to an empty field or the end. Returns the result and the index
    after it.
    """
    tree = fields[pos]
    pos += 1
    files: dict[str, ConflictedFile] = {}
    while pos < len(fields) and fields[pos] != "":
        entry = fields[pos]
        pos += 1
        info, tab, path = entry.partition("\t")
        if tab:
            mode, oid, stage = info.split(" ")
            cf = files.setdefault(path, ConflictedFile(path=path))
            cf.stages.append(StageEntry(mode=mode, oid=oid, stage=int(stage)))
        else:
            files.setdefault(entry, ConflictedFile(path=entry))
    pos += 1  # the empty field closing the file list
    messages: list[MergeMessage] = []
    while pos < len(fields) and fields[pos] != "":
        count = int(fields[pos])
        paths = list(fields[pos + 1 : pos + 1 + count])
        mtype = fields[pos + 1 + count]
        text = fields[pos + 2 + count].rstrip("\n")
        pos += 3 + count
        messages.append(MergeMessage(paths=paths, type=mtype, message=text))
    for msg in messages:
        if not msg.message.startswith("CONFLICT"):
            continue
        kind = _conflict_kind(msg)
        for p in msg.paths:
            if p in files:
                cf = files[p]
                if kind not in cf.kinds:
                    cf.kinds.append(kind)
                cf.messages.append(msg.message)
    return MergeTreeResult(
        clean=clean, tree=tree, conflicts=list(files.values()), messages=messages
    ), pos


def _conflict_kind(msg: MergeMessage) -> str:
    # "CONFLICT (add/add): Merge conflict in x" is more precise than its type "CONFLICT (contents)".
    for text in (msg.message, msg.type):
        if text.startswith("CONFLICT (") and ")" in text:
            kind = text[len("CONFLICT (") : text.index(")")]
            return "content" if kind == "contents" else kind
    return "conflict"


# --- reading objects -------------------------------------------------------------------------


def read_objects(
    repo: Path | str, specs: Iterable[str], env: Mapping[str, str] | None = None
) -> dict[str, bytes | None]:
    """Contents of many objects (`<oid>` or `<tree>:<path>`) through one `git cat-file --batch`.

    Missing objects map to None. Specs with a newline cannot be asked for and also map to None.
    """
    wanted = list(dict.fromkeys(specs))
    result: dict[str, bytes | None] = {s: None for s in wanted}
    asked = [s for s in wanted if "\n" not in s]
    if not asked:
        return result
    data = "".join(s + "\n" for s in asked).encode("utf-8", "surrogateescape")
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        input=data,
        capture_output=True,
        env=git_env(env),
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(["cat-file", "--batch"], proc.returncode, proc.stderr.decode(), repo)
    out = proc.stdout
    pos = 0
    for spec in asked:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split(b" ")
        pos = nl + 1
        if len(header) == 3 and header[2].isdigit():
            size = int(header[2])
            result[spec] = out[pos : pos + size]
            pos += size + 1  # content, then a newline
    return result


def is_binary(data: bytes | None) -> bool:
    return data is not None and b"\0" in data[:8000]


# --- conflict markers ------------------------------------------------------------------------


def _marker(line: str, char: str, size: int) -> bool:
    return (
        line.startswith(char * size)
        and (len(line) == size or line[size] in " \r\n")
        and not line.startswith(char * (size + 1))
    )


def find_conflict_hunks(text: str, marker_size: int = MARKER_SIZE) -> list[ConflictHunk]:
    """Conflict blocks of a merged file, with their line ranges and each side's text."""
    lines = text.splitlines(keepends=True)
    hunks: list[ConflictHunk] = []
    i = 0
    while i < len(lines):
        if not _marker(lines[i], "<", marker_size):
            i += 1
            continue
        start = i
        parts: dict[str, list[str]] = {"ours": [], "base": [], "theirs": []}
        section: str | None = "ours"
        has_base = False
        j = i + 1
        while j < len(lines):
            line = lines[j]
            if section == "ours" and _marker(line, "|", marker_size):
                section, has_base = "base", True
            elif section in ("ours", "base") and _marker(line, "=", marker_size):
                section = "theirs"
            elif section == "theirs" and _marker(line, ">", marker_size):
                section = None
                break
            else:
                parts[section].append(line)
            j += 1
        if section is not None:  # unterminated block: not a conflict we can describe
            break
        hunks.append(
            ConflictHunk(
                merged=LineRange(start=start + 1, count=j - start + 1),
                ours_text="".join(parts["ours"]),
                base_text="".join(parts["base"]) if has_base else None,
                theirs_text="".join(parts["theirs"]),
            )
        )
        i = j + 1
    return hunks


def _resolve_side(text: str, hunks: Sequence[ConflictHunk], side: str) -> tuple[list[str], list]:
    """The merged file with each block replaced by one side's text, and each block's range in it."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    ranges: list[tuple[int, int]] = []
    prev = 0
    for h in hunks:
        out.extend(lines[prev : h.merged.start - 1])
        body = (h.ours_text if side == "ours" else h.theirs_text) or ""
        body_lines = body.splitlines(keepends=True)
        ranges.append((len(out), len(body_lines)))
        out.extend(body_lines)
        prev = h.merged.end
    out.extend(lines[prev:])
    return out, ranges


def _map_index(opcodes: Sequence[tuple[str, int, int, int, int]], i: int) -> int:
    """Position in b of position i in a, from SequenceMatcher opcodes."""
    for tag, i1, i2, j1, _j2 in opcodes:
        if i1 <= i < i2 or (i == i1 == i2):
            return j1 + (i - i1) if tag == "equal" else j1
    return opcodes[-1][4] if opcodes else 0


def map_hunks_to_side(
    merged: str, hunks: Sequence[ConflictHunk], side_text: str, side: str
) -> list[LineRange | None]:
    """Where each block's `side` text sits in that side's own file (None when too large)."""
    resolved, ranges = _resolve_side(merged, hunks, side)
    side_lines = side_text.splitlines(keepends=True)
    if len(resolved) > MAX_MAP_LINES or len(side_lines) > MAX_MAP_LINES:
        return [None] * len(hunks)
    # The resolved text equals the side's file except where the other side changed things cleanly.
    ops = difflib.SequenceMatcher(None, resolved, side_lines, autojunk=False).get_opcodes()
    result: list[LineRange | None] = []
    for start, count in ranges:
        j = _map_index(ops, start)
        result.append(LineRange(start=j + 1, count=count))
    return result


def changed_hunks(base_text: str, side_text: str) -> list[LineRange]:
    """Ranges of `side_text` that differ from `base_text` (like the new side of `git diff -U0`)."""
    a = base_text.splitlines(keepends=True)
    b = side_text.splitlines(keepends=True)
    if len(a) > MAX_MAP_LINES or len(b) > MAX_MAP_LINES:
        return []
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [LineRange(start=j1 + 1, count=j2 - j1) for tag, _, _, j1, j2 in ops if tag != "equal"]


def _decode(data: bytes | None) -> str:
    return data.decode("utf-8", "replace") if data is not None else ""


def describe_conflicts(
    repo: Path | str,
    results: Sequence[MergeTreeResult],
    *,
    env: Mapping[str, str] | None = None,
    with_text: bool = True,
) -> None:
    """Fill in hunks (with side ranges and each side's changed hunks) for every conflicted file.

    Reads all needed blobs (merged file from the result tree, stages 1-3) in one `cat-file`.
    """

    def textual(cf: ConflictedFile) -> bool:
        # Submodule stages are commits: there is no file content to look into.
        return not any(s.mode == "160000" for s in cf.stages)

    specs: list[str] = []
    for res in results:
        for cf in filter(textual, res.conflicts):
            specs.append(f"{res.tree}:{cf.path}")
            specs.extend(s.oid for s in cf.stages)
    if not specs:
        return
    blobs = read_objects(repo, specs, env)
    for res in results:
        for cf in filter(textual, res.conflicts):
            merged = blobs.get(f"{res.tree}:{cf.path}")
            base, ours, theirs = (
                blobs.get(s.oid) if (s := cf.stage(n)) else None for n in (1, 2, 3)
            )
            if any(is_binary(b) for b in (merged, base, ours, theirs)):
                cf.binary = True
                if "binary" not in cf.kinds:
                    cf.kinds.append("binary")
                continue
            merged_text = _decode(merged)
            hunks = find_conflict_hunks(merged_text) if merged is not None else []
            if hunks and ours is not None:
                for h, r in zip(
                    hunks, map_hunks_to_side(merged_text, hunks, _decode(ours), "ours"), strict=True
                ):
                    h.ours = r
            if hunks and theirs is not None:
                for h, r in zip(
                    hunks,
                    map_hunks_to_side(merged_text, hunks, _decode(theirs), "theirs"),
                    strict=True,
                ):
                    h.theirs = r
            if not with_text:
                for h in hunks:
                    h.ours_text = h.base_text = h.theirs_text = None
            cf.hunks = hunks
            if ours is not None:
                cf.ours_hunks = changed_hunks(_decode(base), _decode(ours))
            if theirs is not None:
                cf.theirs_hunks = changed_hunks(_decode(base), _decode(theirs))
