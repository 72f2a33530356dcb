"""Roles: their prompts, tools and permissions, and the session spec built from them.

Role prompts ship as package files (``agents/prompts/<role>.md``); a repository may
override one with ``.stoneforge/prompts/<role>.md``. ``$target_branch`` in a prompt is
replaced by the configured target branch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from string import Template

from stoneforge.agents.bash_policy import BashPolicy, ReadOnlyBashPolicy
from stoneforge.agents.claude_setup import ClaudeSetup, model_setting
from stoneforge.agents.mcp_tools import (
    ASK_DIRECTOR,
    COMPLETE_TASK,
    HANDOFF,
    PROPOSE_PLAN,
    SUBMIT_REVIEW,
    StoneforgeTools,
)
from stoneforge.agents.provider import SessionSpec

PROMPT_OVERRIDE_DIR = Path(".stoneforge") / "prompts"


class Role(StrEnum):
    WORKER = "worker"
    STEWARD = "steward"
    DIRECTOR = "director"
    #: The steward reviewing a merge request: reads everything, changes nothing.
    REVIEWER = "reviewer"


_EDIT_TOOLS = ("Read", "Write", "Edit", "Glob", "Grep", "Bash")
_READ_TOOLS = ("Read", "Glob", "Grep")
_REVIEW_TOOLS = ("Read", "Glob", "Grep", "Bash")  # Bash only for reading commands
# Never listed in allowed_tools: an allow rule would approve edits anywhere on disk,
# while the acceptEdits mode approves them only inside the working directory (edits
# elsewhere would need a human's approval, so the headless CLI refuses them).
_CWD_BOUND_TOOLS = {"Write", "Edit", "NotebookEdit"}


@dataclass(frozen=True)
class RoleProfile:
    role: Role
    tools: tuple[str, ...]  # built-in tools the model sees (all of them allowed)
    mcp_tools: tuple[str, ...]  # stoneforge MCP tools
    guards_bash: bool  # Bash commands go through BashPolicy
    read_only: bool = False  # Bash runs reading commands only; contained, cwd is read-only


PROFILES: dict[Role, RoleProfile] = {
    Role.WORKER: RoleProfile(
        Role.WORKER, _EDIT_TOOLS, (COMPLETE_TASK, HANDOFF, ASK_DIRECTOR), True
    ),
    Role.STEWARD: RoleProfile(Role.STEWARD, _EDIT_TOOLS, (COMPLETE_TASK, ASK_DIRECTOR), True),
    Role.DIRECTOR: RoleProfile(Role.DIRECTOR, _READ_TOOLS, (COMPLETE_TASK, PROPOSE_PLAN), False),
    Role.REVIEWER: RoleProfile(Role.REVIEWER, _REVIEW_TOOLS, (SUBMIT_REVIEW,), True, True),
}


def load_role_prompt(
    role: Role | str, repo_root: Path | None = None, *, target_branch: str = "main"
) -> str:
    """The role prompt: the repository's override if present, else the packaged one."""
    role = Role(role)
    text: str | None = None
    if repo_root is not None:
        override = repo_root / PROMPT_OVERRIDE_DIR / f"{role.value}.md"
        if override.is_file():
            text = override.read_text(encoding="utf-8")
    if text is None:
        text = (
            resources.files("stoneforge.agents")
            .joinpath("prompts", f"{role.value}.md")
            .read_text(encoding="utf-8")
        )
    return Template(text).safe_substitute(target_branch=target_branch)


def build_spec(
    role: Role | str,
    *,
    cwd: Path,
    prompt: str,
    config_dir: Path,
    repo_root: Path | None = None,
    target_branch: str = "main",
    model: str | None = None,
    mcp: StoneforgeTools | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    max_turns: int | None = None,
    idle_timeout_s: float | None = 600.0,
    tool_timeout_s: float | None = 1800.0,
    resume: str | None = None,
    claude_setup: ClaudeSetup | None = None,
) -> SessionSpec:
    """A ready-to-run spec for `role`: its prompt, tools, permissions and MCP tools.

    Pass `mcp` to wire the orchestrator's callbacks (its `enabled` decides which tools
    exist); by default the role's tools are offered and only recorded. `claude_setup` (from
    :func:`~stoneforge.agents.claude_setup.for_role`) adds the user's and the project's
    settings, memory and MCP servers, whose tools are then allowed; without one the session
    still gets the project's settings and memory the same (merged, never loaded raw), nothing
    of the user's and no other MCP server. `model="inherit"` is the
    model of the user's Claude Code settings (else the CLI's default).
    """
    profile = PROFILES[Role(role)]
    tools = mcp if mcp is not None else StoneforgeTools(enabled=profile.mcp_tools)
    policy_class = ReadOnlyBashPolicy if profile.read_only else BashPolicy
    policy = policy_class(target_branch) if profile.guards_bash else None
    if model == "inherit":
        model = model_setting(os.environ)
    if claude_setup is None:
        claude_setup = ClaudeSetup(user=False)
    return SessionSpec(
        cwd=cwd,
        prompt=prompt,
        config_dir=config_dir,
        system_prompt=load_role_prompt(profile.role, repo_root, target_branch=target_branch),
        model=model,
        tools=profile.tools,
        allowed_tools=(
            *(t for t in profile.tools if t not in _CWD_BOUND_TOOLS),
            *tools.tool_names,
            *claude_setup.mcp_tool_rules,
        ),
        disallowed_tools=tuple(policy.disallowed_tool_rules()) if policy else (),
        bash_policy=policy,
        mcp=tools,
        env=dict(env or {}),
        api_key=api_key,
        base_url=base_url,
        resume=resume,
        max_turns=max_turns,
        idle_timeout_s=idle_timeout_s,
        tool_timeout_s=tool_timeout_s,
        repo_root=repo_root,
        claude_setup=claude_setup,
        read_only=profile.read_only,
    )
