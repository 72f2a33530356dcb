"""Conflict-marker diagnostics and the keep-ours/theirs/both code actions, over stdio."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsp_helpers import lsp_session
from lsprotocol import types
from stoneforge.lsp.conflicts import conflict_code_actions, conflict_diagnostics

CONFLICTED = """\
def add(a, b):
<<<<<<< HEAD
    return a + b
=======
    return sum([a, b])
>>>>>>> sf/t2-use-sum
"""


def test_diagnostic_spans_the_block_and_names_both_sides() -> None:
    [diagnostic] = conflict_diagnostics(CONFLICTED)
    assert diagnostic.range.start.line == 1 and diagnostic.range.end.line == 5
    assert diagnostic.message == "merge conflict: ours (HEAD) vs theirs (sf/t2-use-sum)"
    assert diagnostic.source == "stoneforge"
    assert diagnostic.severity == types.DiagnosticSeverity.Error


def test_diff3_blocks_and_unterminated_markers() -> None:
    text = "a\n<<<<<<< ours\nx\n||||||| base\nb\n=======\ny\n>>>>>>> theirs\nz\n<<<<<<< lone\n"
    [diagnostic] = conflict_diagnostics(text)
    assert (diagnostic.range.start.line, diagnostic.range.end.line) == (1, 7)
    assert conflict_diagnostics("no markers\n======= not a block\n") == []


def _apply(text: str, edit: types.TextEdit) -> str:
    lines = text.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: edit.range.start.line]) + edit.range.start.character
    end = sum(len(line) for line in lines[: edit.range.end.line]) + edit.range.end.character
    return text[:start] + edit.new_text + text[end:]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Stoneforge: Keep ours", "def add(a, b):\n    return a + b\n"),
        ("Stoneforge: Keep theirs", "def add(a, b):\n    return sum([a, b])\n"),
        ("Stoneforge: Keep both", "def add(a, b):\n    return a + b\n    return sum([a, b])\n"),
    ],
)
def test_code_actions_resolve_the_block(title: str, expected: str) -> None:
    uri = "file:///x.py"
    cursor = types.Range(
        start=types.Position(line=3, character=0), end=types.Position(line=3, character=0)
    )
    actions = {a.title: a for a in conflict_code_actions(CONFLICTED, uri, cursor)}
    assert set(actions) == {
        "Stoneforge: Keep ours",
        "Stoneforge: Keep theirs",
        "Stoneforge: Keep both",
    }
    [edit] = actions[title].edit.changes[uri]
    assert _apply(CONFLICTED, edit) == expected
    outside = types.Range(
        start=types.Position(line=0, character=0), end=types.Position(line=0, character=3)
    )
    assert conflict_code_actions(CONFLICTED, uri, outside) == []


async def test_diagnostics_appear_on_open_and_clear_after_an_edit(repo: Path) -> None:
    path = repo / "calc.py"
    path.write_text(CONFLICTED)
    uri = path.as_uri()
    async with lsp_session(repo) as client:
        waiting = client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=CONFLICTED
                )
            )
        )
        await asyncio.wait_for(waiting, 10)
        [diagnostic] = client.diagnostics[uri]
        assert "ours (HEAD) vs theirs (sf/t2-use-sum)" in diagnostic.message
        actions = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=diagnostic.range,
                context=types.CodeActionContext(diagnostics=[diagnostic]),
            )
        )
        titles = sorted(a.title for a in actions or [])
        assert titles == [
            "Stoneforge: Keep both",
            "Stoneforge: Keep ours",
            "Stoneforge: Keep theirs",
        ]
        waiting = client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[
                    types.TextDocumentContentChangeWholeDocument(
                        text="def add(a, b):\n    return a + b\n"
                    )
                ],
            )
        )
        await asyncio.wait_for(waiting, 10)
        assert list(client.diagnostics[uri]) == []
