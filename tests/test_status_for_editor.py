"""What `stoneforge/status` tells the editor beyond the counts: the director's questions a person
may want to check, and which Ray node each running session is on (the Agents view groups by it)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from stoneforge import render
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import SessionRole
from stoneforge.orchestrator.daemon import LEASE_NAME
from stoneforge.service import CLUSTER_NODES, Service


def test_open_questions_are_the_unanswered_ones_of_unfinished_tasks(initialised: Path) -> None:
    with Service.open(initialised) as service:
        store = service.store
        asking = service.create_task("Pick a port")
        done = service.create_task("Already merged")
        store.record_question(asking.id, "Which port?", "8080", session_id="s9")
        store.record_question(
            asking.id, "Which database?", "fallback", error="the director crashed"
        )
        store.record_question(done.id, "Old question?", "fallback", error="no director")
        store.transition_task(done.id, TaskEvent.CANCEL)

        [question] = service.status().open_questions
        assert (question.task_id, question.task_title) == (asking.id, "Pick a port")
        assert (question.question, question.error) == ("Which database?", "the director crashed")
        assert question.asked_at is not None
        wire = service.status().wire()["openQuestions"]
        assert wire[0]["question"] == "Which database?" and wire[0]["taskId"] == asking.id
        console = Console(width=200, record=True)
        console.print(render.status_view(service.status()))
        assert (
            f"question of {asking.id} the director could not answer: Which database? "
            "(the director crashed)" in console.export_text()
        )

        # Once the task is done with, nobody needs to look at its question any more.
        store.transition_task(asking.id, TaskEvent.CANCEL)
        assert service.status().open_questions == []


def test_running_sessions_carry_the_node_the_orchestrator_reported(initialised: Path) -> None:
    with Service.open(initialised) as service:
        store = service.store
        task = service.create_task("Spread out")
        on_node = store.start_session(task.id, SessionRole.WORKER)
        on_head = store.start_session(None, SessionRole.STEWARD)
        # A local orchestrator (no node report): no session has a node.
        store.acquire_lease(LEASE_NAME, "token", 20.0)
        assert [a["node"] for a in service.running_agents()] == [None, None]

        nodes = [
            {"nodeId": "n-a", "address": "10.0.0.2", "agentSlots": 2, "checkSlots": 1,
             "busy": 1, "sessions": [on_node.id]},
            {"nodeId": "n-b", "address": "10.0.0.3", "agentSlots": 2, "checkSlots": 1,
             "busy": 0, "sessions": []},
        ]  # fmt: skip
        store.record_event(CLUSTER_NODES, "cluster", None, {"pid": os.getpid(), "nodes": nodes})
        agents = {a["sessionId"]: a["node"] for a in service.running_agents()}
        assert agents == {on_node.id: {"nodeId": "n-a", "address": "10.0.0.2"}, on_head.id: None}
        assert [n.sessions for n in service.status().nodes or []] == [[on_node.id], []]

        # An earlier orchestrator's report says nothing about the sessions running now.
        store.record_event(CLUSTER_NODES, "cluster", None, {"pid": 1, "nodes": nodes})
        assert [a["node"] for a in service.running_agents()] == [None, None]
