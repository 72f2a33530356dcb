"""The director: a goal becomes a plan of tasks; workers' questions get answers.

The slow tests run `sf` as a user does (subprocesses), the real Claude Code CLI per session and
real git; only the model is scripted. The others check the pieces (proposal validation, the
atomic store write, rendering) directly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conftest import SfResult, SfRunner, write_config
from lsp_helpers import lsp_session, request
from serve_helpers import run_serve, serve_env
from stoneforge import render
from stoneforge.demo import FakeModel, Step
from stoneforge.demo.recording import RecordedRequest
from stoneforge.errors import InvalidInputError
from stoneforge.models import SessionRole
from stoneforge.orchestrator.director import (
    PLAN_PROMPT_HEAD,
    Director,
    DirectorError,
)
from stoneforge.orchestrator.plan_proposal import review_proposal
from stoneforge.service import Service
from stoneforge.store import PlannedTask, Store

GOAL = "Make the greeting configurable"
TASKS = [
    {
        "key": "schema",
        "title": "Add a settings schema",
        "description": "A pydantic Settings model with `greeting`. Accept: unit test passes.",
        "priority": 1,
    },
    {
        "key": "loader",
        "title": "Load settings from settings.yaml",
        "description": "Read settings.yaml into Settings. Accept: missing file uses defaults.",
        "priority": 2,
        "dependsOn": ["schema"],
    },
    {
        "key": "docs",
        "title": "Document the settings",
        "description": "A section in README.md. Accept: every key is described.",
        "priority": 4,
    },
]


def configure(repo: Path) -> None:
    write_config(repo, "orchestrator:\n  retryBackoffS: 0.2\nmerge:\n  checks: []\n")


def sf_model(repo: Path, model: FakeModel, *args: str, check: bool = True) -> SfResult:
    """`sf ARGS...` with the scripted endpoint as the model (as `sf serve` gets it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "stoneforge", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=serve_env(model),
        timeout=150,
    )
    result = SfResult(proc)
    if check and proc.returncode != 0:
        raise AssertionError(f"sf {' '.join(args)} failed: {result!r}")
    return result


def store_of(repo: Path) -> Store:
    return Store(repo / ".stoneforge" / "state.db", actor="test")


def tool_result_texts(request: RecordedRequest) -> list[tuple[bool, str]]:
    return [
        (bool(block.get("is_error")), request.tool_result_text(block))
        for block in request.tool_results()
    ]


# -- a goal becomes a plan -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_goal_becomes_three_tasks_with_one_dependency(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    script = fake_model.add_script(
        [
            # The director reads the code first: its checkout holds the target's files.
            lambda req: Step.tool("Read", file_path=f"{req.cwd}/README.md"),
            Step.mcp("propose_plan", tasks=TASKS),
            Step.say("Planned: schema, then loader; docs in parallel."),
        ],
        marker=PLAN_PROMPT_HEAD,
    )
    made = sf_model(
        initialised, fake_model, "plan", "create", "--title", "Settings", "--goal", GOAL, "--json"
    ).json()
    assert made["id"] == "p1" and made["status"] == "draft" and made["goal"] == GOAL
    tasks = {task["title"]: task for task in made["tasks"]}
    schema, loader, docs = (tasks[t["title"]] for t in TASKS)
    assert [schema["priority"], loader["priority"], docs["priority"]] == [1, 2, 4]
    assert loader["dependsOn"] == [schema["id"]] and loader["blocked"] is True
    assert schema["dependsOn"] == [] and docs["dependsOn"] == []
    assert schema["effectivePriority"] == 1 and docs["effectivePriority"] == 4
    assert loader["description"] == TASKS[1]["description"]
    assert all(t["planId"] == "p1" and t["status"] == "open" for t in made["tasks"])
    assert made["taskIds"] == [schema["id"], loader["id"], docs["id"]]

    # The director ran read-only, in a checkout of main's tip.
    requests = fake_model.main_requests(script)
    offered = set(requests[0].tool_names)
    assert {"Read", "Glob", "Grep", "mcp__stoneforge__propose_plan"} <= offered
    assert not offered & {"Bash", "Write", "Edit"}
    assert requests[0].cwd is not None and requests[0].cwd.endswith("_director")
    assert GOAL in requests[0].first_user_text
    [(read_failed, readme)] = tool_result_texts(requests[1])
    assert not read_failed and "# demo" in readme
    [(rejected, verdict)] = tool_result_texts(requests[2])
    assert not rejected and "Plan accepted: 3 tasks" in verdict
    with store_of(initialised) as store:
        [session] = store.list_sessions()
        ref = store.director_session("p1")
    assert session.role == SessionRole.DIRECTOR and session.status.value == "completed"
    assert session.task_id is None and session.provider_session_id
    assert ref is not None and ref.provider_session_id == session.provider_session_id

    # The tree shows the dependency: loader under schema, docs on its own.
    tree = sf("plan", "show", "p1").stdout.splitlines()
    line = {t: next(i for i, text in enumerate(tree) if t in text) for t in tasks}
    assert f"goal: {GOAL}" in "\n".join(tree)
    indent = {t: len(tree[i]) - len(tree[i].lstrip("│├└─ ")) for t, i in line.items()}
    assert line["Add a settings schema"] < line["Load settings from settings.yaml"]
    assert indent["Load settings from settings.yaml"] > indent["Add a settings schema"]
    assert indent["Document the settings"] == indent["Add a settings schema"]
    assert "blocked" in tree[line["Load settings from settings.yaml"]]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_cycle_is_rejected_and_corrected_on_the_second_try(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    cyclic = [
        {"key": "api", "title": "API", "priority": 2, "dependsOn": ["db"]},
        {"key": "db", "title": "Database", "priority": 1, "dependsOn": ["ui"]},
        {"key": "ui", "title": "UI", "priority": 3, "dependsOn": ["api"]},
    ]
    fixed = [
        {**task, "dependsOn": deps}
        for task, deps in zip(cyclic, [["db"], [], ["api"]], strict=True)
    ]
    seen: list[tuple[bool, str]] = []

    def correct(req: RecordedRequest) -> Step:
        seen.extend(tool_result_texts(req))
        return Step.mcp("propose_plan", tasks=fixed)

    fake_model.add_script(
        [Step.mcp("propose_plan", tasks=cyclic), correct, Step.say("Fixed the cycle.")],
        marker=PLAN_PROMPT_HEAD,
    )
    created = sf_model(initialised, fake_model, "plan", "create", "--title", "App", "--goal", GOAL)
    assert created.stdout == "p1\n"  # the id alone, for scripts
    [(rejected, reasons)] = seen
    assert rejected and "dependency cycle: api -> db -> ui -> api" in reasons
    assert "last attempt" in reasons
    shown = sf("plan", "show", "p1", "--json").json()
    deps = {task["title"]: task["dependsOn"] for task in shown["tasks"]}
    assert deps == {"API": ["t2"], "Database": [], "UI": ["t1"]}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_proposal_that_stays_invalid_creates_nothing(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    bad = [
        {"key": "a", "title": "  ", "priority": 9},
        {"key": "b", "title": "Build", "dependsOn": ["ghost"]},
    ]
    still_bad = [{"key": "a", "title": "Write", "priority": 0}, {"key": "b", "title": "Build"}]
    script = fake_model.add_script(
        [
            Step.mcp("propose_plan", tasks=bad),
            Step.mcp("propose_plan", tasks=still_bad),
            Step.say("I could not make a valid plan."),
        ],
        marker=PLAN_PROMPT_HEAD,
    )
    result = sf_model(
        initialised, fake_model, "plan", "create", "--title", "X", "--goal", GOAL, check=False
    )
    assert result.returncode == 1 and result.stdout == ""
    assert "invalid plan twice" in result.stderr and "no plan was created" in result.stderr
    assert "priority: Input should be greater than or equal to 1" in result.stderr
    requests = fake_model.main_requests(script)
    [(first_error, first)] = tool_result_texts(requests[1])
    assert first_error and "task 'a', title: must not be empty" in first
    assert "task 'a', priority: Input should be less than or equal to 5" in first
    assert "task 'b' depends on unknown key 'ghost'" in first
    [(second_error, second)] = tool_result_texts(requests[2])
    assert second_error and "still invalid" in second and "No plan will be created" in second
    assert sf("plan", "list", "--json").json() == []
    assert sf("task", "list", "--json").json() == []


# -- questions -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_questions_are_answered_by_the_resumed_director_and_recorded(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    q1, a1 = "Which database should the notes use?", "Use SQLite: one file, no server."
    q2, a2 = "Where does the database file live?", "In data/notes.db, ignored by git."
    q3, a3 = "May I add a dependency?", "No: use the standard library."
    heard: dict[str, str] = {}

    def answer(question: str, text: str) -> Any:
        def step(req: RecordedRequest) -> Step:
            heard[question] = req.all_text
            return Step.say(text)

        return step

    fake_model.add_script(
        [
            Step.mcp(
                "propose_plan",
                tasks=[{"key": "store", "title": "Persist the notes", "priority": 2}],
            ),
            Step.say("Planned."),
            answer(q1, a1),
            answer(q2, a2),
        ],
        marker=PLAN_PROMPT_HEAD,
    )
    plan_id = sf_model(
        initialised,
        fake_model,
        "plan",
        "create",
        "--title",
        "Storage",
        "--goal",
        "Persist the notes",
        "--activate",
    ).stdout.strip()
    assert sf("plan", "show", plan_id, "--json").json()["status"] == "active"
    # A task of no plan: its question goes to a fresh director, kept for the next ones.
    loose = sf("task", "create", "--title", "Tidy the notes").stdout.strip()
    fake_model.add_script([answer(q3, a3)], marker="of tasks that belong to no plan")

    replies: list[str] = []

    def ask(question: str) -> Any:
        def step(req: RecordedRequest) -> Step:
            replies.extend(text for _, text in tool_result_texts(req))
            return Step.mcp("ask_director", question=question)

        return step

    fake_model.add_script(
        [
            Step.mcp("ask_director", question=q1),
            ask(q2),
            lambda req: (
                replies.extend(text for _, text in tool_result_texts(req))
                or Step.write("notes.py", "DB = 'data/notes.db'\n")
            ),
            Step.bash("git add -A && git commit -q -m 'Persist notes in SQLite'"),
            Step.mcp("complete_task", summary="Notes persisted"),
            Step.say("Done."),
        ],
        marker="Stoneforge task t1:",
    )
    fake_model.add_script(
        [
            Step.mcp("ask_director", question=q3),
            Step.write("tidy.txt", "tidy\n"),
            Step.bash("git add -A && git commit -q -m 'Tidy'"),
            Step.say("Done."),
        ],
        marker=f"Stoneforge task {loose}:",
    )
    code, _, err = run_serve(initialised, fake_model)
    assert code == 0, err

    # The answers came back to the worker as the tool's results.
    assert len(replies) == 2 and a1 in replies[0] and a2 in replies[1]
    task = sf("task", "show", "t1", "--json").json()
    assert task["status"] == "merged"
    asked = [(q["question"], q["answer"]) for q in task["questions"]]
    assert asked == [(q1, a1), (q2, a2)]
    assert all(q["sessionId"] and q["error"] is None for q in task["questions"])
    assert task["questions"][0]["askedAt"] <= task["questions"][0]["answeredAt"]

    # One director conversation per plan: both questions resumed the planning session.
    with store_of(initialised) as store:
        directors = [s for s in store.list_sessions() if s.role == SessionRole.DIRECTOR]
        loose_ref = store.director_session(None)
    by_task: dict[str | None, list] = {}
    for session in directors:
        by_task.setdefault(session.task_id, []).append(session)
    [planning], [first, second], [loose_director] = by_task[None], by_task["t1"], by_task[loose]
    assert [q["sessionId"] for q in task["questions"]] == [first.id, second.id]
    assert planning.provider_session_id
    assert planning.provider_session_id == first.provider_session_id
    assert first.provider_session_id == second.provider_session_id
    assert all(s.status.value == "completed" for s in directors)
    # The second turn saw the planning and the first question and answer: it kept the context.
    assert "Persist the notes" in heard[q2] and q1 in heard[q2] and a1 in heard[q2]

    # The task of no plan got its own director, remembered for its next question.
    assert loose_director.provider_session_id != planning.provider_session_id
    assert loose_ref is not None and loose_ref.provider_session_id == (
        loose_director.provider_session_id
    )
    loose_task = sf("task", "show", loose, "--json").json()
    assert [(q["question"], q["answer"]) for q in loose_task["questions"]] == [(q3, a3)]

    shown = sf("task", "show", "t1").stdout
    assert f"Q: {q1}" in shown and f"A: {a2}" in shown and "director" in shown


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_language_servers_create_plan_runs_the_director(
    initialised: Path, fake_model: FakeModel
) -> None:
    fake_model.add_script([Step.mcp("propose_plan", tasks=TASKS)], marker=PLAN_PROMPT_HEAD)
    async with lsp_session(initialised, env=serve_env(fake_model)) as client:
        plan = await request(
            client, "stoneforge/createPlan", {"title": "Editor", "goal": GOAL, "activate": True}
        )
        assert plan["status"] == "active" and plan["taskIds"] == ["t1", "t2", "t3"]
        tasks = await request(client, "stoneforge/listTasks", {"planId": plan["id"]})
        assert [t["dependsOn"] for t in tasks["tasks"]] == [[], ["t1"], []]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_director_that_cannot_be_resumed_is_replaced_by_a_fresh_one(
    initialised: Path, fake_model: FakeModel
) -> None:
    fake_model.add_script([Step.say("Use tabs.")], marker="Stoneforge director: you answer")
    gone = "0b7ad7c5-8d0e-4c3e-9a53-2d8c3f6f1e21"
    with Service.open(initialised) as service:
        plan = service.create_plan("By hand")  # no goal: no director yet
        task = service.create_task("Indent", plan_id=plan.id)
        service.store.set_director_session(
            plan.id,
            session_id=None,
            provider_session_id=gone,  # its transcript is gone
            config_dir=initialised / ".stoneforge" / "agents" / "gone",
            cwd=initialised,
        )
        director = Director(
            root=service.root,
            config=service.config,
            store=service.store,
            target="main",
            agent_env=fake_model.env(),
        )
        assert await director.answer(task, "Tabs or spaces?") == "Use tabs."
        failed, fresh = service.store.list_sessions(task_id=task.id)
        ref = service.store.director_session(plan.id)
        [question] = service.store.get_task(task.id).questions
    assert failed.status.value == "failed" and "No conversation found" in (failed.error or "")
    assert fresh.status.value == "completed" and question.session_id == fresh.id
    assert ref is not None and ref.provider_session_id == fresh.provider_session_id != gone
    assert ref.cwd.endswith("_director") and ref.session_id == fresh.id


# -- the pieces ----------------------------------------------------------------------------------


def test_without_credentials_the_director_refuses_and_creates_nothing(
    initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX",
        "CLAUDE_CODE_USE_FOUNDRY",
        "ANTHROPIC_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(initialised.parent / "no-login-here"))  # no `claude` login
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    with Service.open(initialised) as service:
        with pytest.raises(
            DirectorError, match="cannot run: no API key, token or claude login found.*setup-token"
        ):
            service.create_plan("Plan", "a goal")
        assert service.list_plans() == [] and service.store.list_sessions() == []


def test_review_proposal_names_every_problem_at_once() -> None:
    proposal, problems = review_proposal(
        {
            "tasks": [
                {"key": "a", "title": "", "priority": 7, "dependsOn": ["b", "nope"]},
                {"key": "b", "title": "B", "dependsOn": "a"},
                {"key": "b", "title": "Again"},
                {"title": "no key"},
            ]
        }
    )
    assert proposal is None
    assert problems == [
        "task 'a', title: must not be empty",
        "task 'a', priority: Input should be less than or equal to 5",
        "task #4, key: Field required",
        "task 'a' depends on unknown key 'nope'",
        "task 'b': the key is used by more than one task",
        "dependency cycle: a -> b -> a",
    ]
    assert review_proposal({})[1] == ["tasks: is missing: send `tasks`, a list of task objects"]
    assert review_proposal({"tasks": []})[1] == [
        "tasks: List should have at least 1 item after validation, not 0"
    ]
    assert review_proposal({"tasks": [{"key": "x", "title": "X", "dependsOn": ["x"]}]})[1] == [
        "task 'x' depends on itself"
    ]
    assert review_proposal({"tasks": [{"key": "x", "title": "X", "description": None}]})[1] == []
    # What models tend to send: numbers for keys, a JSON string for the list, "2" priorities.
    ok, none = review_proposal(
        {
            "tasks": '[{"key": 1, "title": " One "}, {"key": 2, "title": "Two", "priority": "2",'
            ' "dependsOn": [1]}]'
        }
    )
    assert none == [] and ok is not None
    assert [(t.key, t.title, t.priority, t.depends_on) for t in ok.tasks] == [
        ("1", "One", 3, []),
        ("2", "Two", 2, ["1"]),
    ]


def test_store_creates_a_plan_with_its_tasks_all_or_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        with pytest.raises(InvalidInputError, match="dependency cycle: a -> b -> a"):
            store.create_plan_with_tasks(
                "P",
                "g",
                [
                    PlannedTask("a", "A", depends_on=("b",)),
                    PlannedTask("b", "B", depends_on=("a",)),
                ],
            )
        with pytest.raises(InvalidInputError, match="priority must be 1"):
            store.create_plan_with_tasks("P", "g", [PlannedTask("a", "A", priority=6)])
        assert store.list_plans() == [] and store.list_tasks() == []
        assert store.last_event_id() == 0  # not even an event
        plan = store.create_plan_with_tasks(
            "P",
            "g",
            [
                PlannedTask("late", "Late", priority=5, depends_on=("early",)),
                PlannedTask("early", "Early", "first things first", priority=4),
            ],
        )
        late, early = store.list_tasks(plan_id=plan.id)
        assert (plan.status.value, plan.task_ids) == ("draft", [late.id, early.id])
        assert late.depends_on == [early.id] and early.effective_priority == 4
        assert early.description == "first things first"
        kinds = [e.kind for e in store.events_since()]
        assert kinds == ["plan.created", "task.created", "task.created"]


def test_questions_are_stored_on_the_task_and_shown(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        task = store.create_task("Ask")
        store.record_question(task.id, "Which port?", "8080, as in config.py.", session_id="s9")
        store.record_question(task.id, "Why?", "fallback", error="the director crashed")
        questions = store.get_task(task.id).questions
        assert [(q.question, q.answer, q.session_id) for q in questions] == [
            ("Which port?", "8080, as in config.py.", "s9"),
            ("Why?", "fallback", None),
        ]
        assert questions[1].error == "the director crashed"
        assert store.list_tasks()[0].wire()["questions"][0]["answer"] == "8080, as in config.py."
        console = Console(width=120, record=True)
        console.print(render.task_detail(store.get_task(task.id)))
        shown = console.export_text()
    assert "Q: Which port?" in shown and "A: 8080, as in config.py." in shown
    assert "director session s9" in shown


def test_plan_tree_names_every_dependency(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        outside = store.create_task("Outside the plan")
        plan = store.create_plan_with_tasks(
            "P",
            None,
            [
                PlannedTask("a", "Alpha"),
                PlannedTask("b", "Beta"),
                PlannedTask("c", "Gamma", depends_on=("a", "b")),
            ],
        )
        store.add_dependency("t2", outside.id)  # Alpha waits on a task of no plan
        console = Console(width=120, record=True)
        console.print(render.plan_tree(plan, store.list_tasks(plan_id=plan.id)))
        lines = console.export_text().splitlines()
        empty = store.create_plan("Empty")
        console = Console(width=120, record=True)
        console.print(render.plan_tree(empty, []))
        assert "no tasks yet" in console.export_text()
    alpha = next(line for line in lines if "Alpha" in line)
    gamma = next(line for line in lines if "Gamma" in line)
    assert f"(after {outside.id})" in alpha
    assert "(also after t3)" in gamma and lines.index(gamma) > lines.index(alpha)
