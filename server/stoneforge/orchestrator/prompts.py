"""The user prompt a worker session starts with: the task, its plan, and what came before.

The role prompt (how a worker behaves) is the system prompt, from `agents/prompts/worker.md`;
this is the situation: which task, on which branch, after which handoff or crash.
"""

from __future__ import annotations

from collections.abc import Sequence

from stoneforge.models import Handoff, Plan, Task

HANDOFF_REQUEST = (
    "Stoneforge: your context is nearly full. Stop working on the task now. Commit what you "
    "have, then call the `mcp__stoneforge__handoff` tool once with: done, remaining, "
    "filesTouched, decisions, failingTests and nextStep, so a fresh session can continue "
    "exactly where you are. Do nothing else after the handoff."
)

#: Sent when the task's spending reaches its budget (budgets, issue 15).
BUDGET_HANDOFF_REQUEST = (
    "Stoneforge: this task has reached its budget. Stop working on the task now. Commit what "
    "you have, then call the `mcp__stoneforge__handoff` tool once with: done, remaining, "
    "filesTouched, decisions, failingTests and nextStep, so the work can continue exactly "
    "where you are once a person raises the budget. Do nothing else after the handoff."
)


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items) if items else "- (none)"


def render_handoff(handoff: Handoff) -> str:
    """A handoff as the next session (and a human) reads it."""
    source = "the previous session" if handoff.source == "agent" else "the orchestrator"
    return (
        f"Handoff from {source} (branch head {handoff.commit or 'unknown'}):\n"
        f"Done:\n{handoff.done or '(not stated)'}\n\n"
        f"Remaining:\n{handoff.remaining or '(not stated)'}\n\n"
        f"Files touched:\n{_bullets(handoff.files_touched)}\n\n"
        f"Decisions:\n{_bullets(handoff.decisions)}\n\n"
        f"Failing tests:\n{_bullets(handoff.failing_tests)}\n\n"
        f"Next step:\n{handoff.next_step or '(not stated)'}"
    )


def worker_prompt(
    task: Task,
    *,
    branch: str,
    target: str,
    plan: Plan | None = None,
    plan_titles: Sequence[str] = (),
    handoff: Handoff | None = None,
    note: str | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """Everything a fresh worker session needs to start or continue ``task``."""
    parts = [
        f"Stoneforge task {task.id}: {task.title}",
        f"Priority {task.priority} (1 is most urgent).",
        f"You work on branch `{branch}` in this worktree. Commit your work there with git; "
        f"never switch branches, push, or merge into `{target}`: the merge queue lands your "
        "branch after checking it.",
    ]
    if task.description:
        parts.append(f"Description and acceptance criteria:\n{task.description}")
    if plan is not None:
        context = f"This task belongs to the plan {plan.id} '{plan.title}'"
        if plan.goal:
            context += f" whose goal is: {plan.goal}"
        parts.append(context + ".")
        if plan_titles:
            parts.append("Other tasks of the plan:\n" + _bullets(plan_titles))
    if handoff is not None:
        parts.append(
            "You continue work that an earlier session began; nothing of it is lost.\n"
            + render_handoff(handoff)
        )
    if note:
        parts.append(f"Note from the orchestrator:\n{note}")
    if warnings:
        parts.append("Heads-up, predicted merge conflicts:\n" + _bullets(warnings))
    parts.append(
        "When the task is done and committed, call `mcp__stoneforge__complete_task` with a "
        "short summary of the change, then stop."
    )
    return "\n\n".join(parts)
