"""Conflict markers in open documents: diagnostics and the keep-ours/theirs/both code actions.

Pure functions over document text (lsprotocol types only), so they are tested without a server.
"""

from __future__ import annotations

from lsprotocol import types

from stoneforge.git.conflicts import MARKER_SIZE, ConflictHunk, find_conflict_hunks

SOURCE = "stoneforge"
CONFLICT_CODE = "merge-conflict"


def _label(line: str) -> str:
    return line[MARKER_SIZE:].strip()


def _block_range(lines: list[str], hunk: ConflictHunk) -> types.Range:
    first = hunk.merged.start - 1
    last = hunk.merged.end - 1
    return types.Range(
        start=types.Position(line=first, character=0),
        end=types.Position(line=last, character=len(lines[last].rstrip("\r\n"))),
    )


def conflict_diagnostics(text: str) -> list[types.Diagnostic]:
    """One error per conflict block, naming the two sides."""
    lines = text.splitlines(keepends=True)
    diagnostics = []
    for hunk in find_conflict_hunks(text):
        ours = _label(lines[hunk.merged.start - 1]) or "ours"
        theirs = _label(lines[hunk.merged.end - 1]) or "theirs"
        diagnostics.append(
            types.Diagnostic(
                range=_block_range(lines, hunk),
                message=f"merge conflict: ours ({ours}) vs theirs ({theirs})",
                severity=types.DiagnosticSeverity.Error,
                source=SOURCE,
                code=CONFLICT_CODE,
            )
        )
    return diagnostics


def _overlaps(a: types.Range, b: types.Range) -> bool:
    return not (a.end.line < b.start.line or b.end.line < a.start.line)


def _replacement_range(lines: list[str], hunk: ConflictHunk) -> types.Range:
    # Whole lines: from the start of the <<<<<<< line to the start of the line after >>>>>>>.
    # A file ending in a newline has an (empty) line after its last one, so that is valid too.
    first = hunk.merged.start - 1
    last = hunk.merged.end - 1
    if lines[last].endswith("\n"):
        end = types.Position(line=last + 1, character=0)
    else:
        end = types.Position(line=last, character=len(lines[last]))
    return types.Range(start=types.Position(line=first, character=0), end=end)


def conflict_code_actions(text: str, uri: str, requested: types.Range) -> list[types.CodeAction]:
    """Keep ours / keep theirs / keep both, for each conflict block touching ``requested``."""
    lines = text.splitlines(keepends=True)
    actions = []
    for hunk in find_conflict_hunks(text):
        block = _block_range(lines, hunk)
        if not _overlaps(block, requested):
            continue
        ours = hunk.ours_text or ""
        theirs = hunk.theirs_text or ""
        # A block ending the file without a final newline keeps that shape.
        no_final_newline = not lines[hunk.merged.end - 1].endswith("\n")
        choices = [("Keep ours", ours), ("Keep theirs", theirs), ("Keep both", ours + theirs)]
        for title, replacement in choices:
            if no_final_newline and replacement.endswith("\n"):
                replacement = replacement[:-1]
            edit = types.TextEdit(range=_replacement_range(lines, hunk), new_text=replacement)
            actions.append(
                types.CodeAction(
                    title=f"Stoneforge: {title}",
                    kind=types.CodeActionKind.QuickFix,
                    edit=types.WorkspaceEdit(changes={uri: [edit]}),
                    diagnostics=[d for d in conflict_diagnostics(text) if d.range == block],
                )
            )
    return actions
