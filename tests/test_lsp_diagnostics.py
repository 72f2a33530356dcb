"""Conflict-marker diagnostics and the keep-ours/theirs/both code actions, over stdio."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types

from lsp_helpers import lsp_session
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


async def test_forecast_conflicts_warn_on_the_users_open_file(repo: Path) -> None:
    from conftest import git
    from stoneforge.store import Store

    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\nVERSION = 1\n")
    git(repo, "add", "calc.py")
    git(repo, "commit", "-q", "-m", "calc")
    # An agent's branch changes the add() body ...
    git(repo, "checkout", "-q", "-b", "sf/t1-use-sum")
    (repo / "calc.py").write_text("def add(a, b):\n    return sum([a, b])\n\n\nVERSION = 1\n")
    git(repo, "commit", "-q", "-am", "use sum")
    git(repo, "checkout", "-q", "main")
    # ... and so does main.
    (repo / "calc.py").write_text("def add(a, b):\n    return b + a\n\n\nVERSION = 1\n")
    git(repo, "commit", "-q", "-am", "commute")
    from stoneforge.service import Service

    service, _ = Service.init(repo)
    with service:
        task = service.create_task("Use sum in add")
        service.store.dispatch_task(task.id)
        service.store.update_task(task.id, branch="sf/t1-use-sum")
    uri = (repo / "calc.py").as_uri()
    text = (repo / "calc.py").read_text()
    async with lsp_session(repo) as client:
        for _ in range(100):
            waiting = client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=uri, language_id="python", version=1, text=text
                    )
                )
            )
            await asyncio.wait_for(waiting, 10)
            if client.diagnostics.get(uri):
                break
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )
            await asyncio.sleep(0.1)
        [warning] = client.diagnostics[uri]
        assert warning.severity == types.DiagnosticSeverity.Warning
        assert warning.source == "stoneforge"
        assert "task t1 (Use sum in add)" in warning.message and "conflict" in warning.message
        assert warning.range.start.line <= 1 <= warning.range.end.line  # the `return` line
        assert warning.range.end.line < 4  # not the untouched VERSION line
        # Resolved (the task is cancelled: its branch is no longer active): the warning clears.
        with Store(repo / ".stoneforge" / "state.db") as store:
            store.cancel_task(task.id)
        for _ in range(100):
            if not client.diagnostics.get(uri):
                break
            await asyncio.sleep(0.1)
        assert list(client.diagnostics[uri]) == []
