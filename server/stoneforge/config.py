"""`.stoneforge/config.yaml` <-> pydantic models, with defaults.

Every key is optional. Broken YAML, an unknown key or a wrong type raises :class:`ConfigError`,
whose message names the file, the key path and the line, so the user can fix it at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stoneforge.errors import ConfigError
from stoneforge.redact import is_secret_name

CONFIG_RELPATH = Path(".stoneforge") / "config.yaml"


class _Section(BaseModel):
    # The documented keys are camelCase, so the Python names are too: one spelling everywhere.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class OrchestratorConfig(_Section):
    agent: Literal["claude-code"] = "claude-code"
    maxConcurrent: int = Field(default=6, ge=1, le=64)
    worktreeIsolation: bool = True
    handoffAtTokens: int = Field(default=140_000, ge=1_000)
    worktreeDir: str = ".stoneforge/worktrees"
    maxAttempts: int = Field(default=3, ge=1, le=20)
    #: Seconds between the first retry of a crashed task and the next (doubles per attempt).
    retryBackoffS: float = Field(default=2.0, ge=0)
    #: After a provider error (outage, overload): wait this long before one probe session;
    #: doubles after each failed probe, up to `providerBackoffMaxS`.
    providerBackoffS: float = Field(default=5.0, gt=0)
    providerBackoffMaxS: float = Field(default=300.0, gt=0)
    #: Where worker sessions run: `local` (this machine) or `ray` (actors on a Ray cluster's
    #: nodes, see the `ray` section; needs `merge.remote`).
    backend: Literal["local", "ray"] = "local"
    #: Stacked branches: a task whose blockers are all merged or in review may start, on a
    #: branch stacked on its blockers' heads (see `orchestrator/stacking.py`).
    stacking: bool = True

    @model_validator(mode="after")
    def _backoff_cap_above_start(self) -> OrchestratorConfig:
        if self.providerBackoffMaxS < self.providerBackoffS:
            raise ValueError(
                f"providerBackoffMaxS ({self.providerBackoffMaxS:g}) must be at least "
                f"providerBackoffS ({self.providerBackoffS:g})"
            )
        return self

    def worktree_dir(self, root: Path) -> Path:
        """Where task checkouts (and the stewards', reviewer's and director's) live:
        `worktreeDir`, taken relative to the repository's root unless it is absolute."""
        configured = Path(self.worktreeDir)
        return configured if configured.is_absolute() else root / configured


class AgentRoleConfig(_Section):
    provider: Literal["claude-code"] = "claude-code"
    model: str = "claude-sonnet-4-20250514"
    maxSessionTokens: int = Field(default=200_000, ge=1_000)
    #: A session that sends no event for this long is hung: it is stopped and treated as crashed.
    idleTimeoutS: float = Field(default=600.0, gt=0)
    maxTurns: int = Field(default=200, ge=1)
    #: Path of a `claude` executable to use instead of the one bundled with claude-agent-sdk.
    cliPath: str | None = None
    #: `inherit`: the user's and the project's MCP servers are offered to this role's sessions
    #: (their tools allowed); `none`: only stoneforge's own. Workers inherit by default.
    mcpServers: Literal["inherit", "none"] = "inherit"


class StewardConfig(AgentRoleConfig):
    autoMerge: bool = True
    runChecks: bool = True
    #: A read-only steward session reviews each merge request's change before its checks.
    review: bool = True
    #: Reviews asking for changes that send the task back to a worker; after that many, the
    #: merge request waits for a person in awaiting_approval.
    maxReviewRounds: int = Field(default=2, ge=1, le=20)
    #: The conflict resolver edits conflicted files only: no MCP servers unless asked for.
    mcpServers: Literal["inherit", "none"] = "none"


class DirectorConfig(AgentRoleConfig):
    #: The director plans read-only; other servers' tools may change things: none by default.
    mcpServers: Literal["inherit", "none"] = "none"


#: How a credential reaches the CLI: an API key, or a subscription's token (`claude setup-token`).
CredentialKind = Literal["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CredentialConfig(_Section):
    """One credential: the environment variable of `sf serve` that holds it (never its value)."""

    env: str
    passAs: CredentialKind = "ANTHROPIC_API_KEY"

    @field_validator("env")
    @classmethod
    def _a_secret_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        if not is_secret_name(value):
            # Only such names are kept out of logs and of the agents' tools' environments.
            raise ValueError(
                f"{value} does not look like a credential's name (it must contain KEY, TOKEN, "
                "SECRET, PASSWORD or CREDENTIAL, so that its value is kept out of logs and tools)"
            )
        return value


class AgentsConfig(_Section):
    #: Contain agent processes with bubblewrap: `auto` when it works here (loud warning when
    #: not), `required` refuses to run agents without it, `off` never contains them.
    sandbox: Literal["required", "auto", "off"] = "auto"
    #: `inherit`: your Claude Code settings, hooks, CLAUDE.md and MCP servers carry into agent
    #: sessions (see docs/configuration.md); `none`: only the project's own.
    claudeSetup: Literal["inherit", "none"] = "inherit"
    worker: AgentRoleConfig = AgentRoleConfig()

    @field_validator("sandbox", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    steward: StewardConfig = StewardConfig()
    director: DirectorConfig = DirectorConfig()
    #: Environment variables holding API keys (or subscription tokens) to spread sessions over;
    #: one that is rate-limited or out of credit rests while the others carry on. Empty: the
    #: CLI's own (`ANTHROPIC_API_KEY` or its login).
    credentials: list[CredentialConfig] = []

    @field_validator("credentials", mode="before")
    @classmethod
    def _names_are_credentials(cls, value: Any) -> Any:
        if isinstance(value, list):  # a bare name is an API key
            return [{"env": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("credentials")
    @classmethod
    def _distinct(cls, value: list[CredentialConfig]) -> list[CredentialConfig]:
        names = [c.env for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} is named more than once")
        return value


class MergeConfig(_Section):
    targetBranch: str = "main"
    checks: list[str] = ["python -m pytest -q"]
    checkTimeoutS: float = Field(default=900.0, gt=0)
    batchSize: int = Field(default=4, ge=1, le=64)
    deleteMergedBranches: bool = True
    #: The remote that holds the target (e.g. `origin`); None: the local branch is the target.
    remote: str | None = None
    #: Push each task branch to `remote` as it progresses (and delete it there once merged).
    pushBranches: bool = False
    #: Changes to the gate itself need a human: an MR touching these paths (a directory ends in
    #: `/`) waits in awaiting_approval whatever `autoMerge` says.
    #: `.mcp.json` too: it decides which commands agents start with the secrets its `env` names.
    protectedPaths: list[str] = [".stoneforge/", ".github/", ".mcp.json"]
    #: A check command that failed and then passed its retry this many times is listed as flaky.
    flakyReportAfter: int = Field(default=3, ge=1)
    #: Check commands whose failure is reported but does not block landing. Never implicit.
    quarantine: list[str] = []
    #: Where the steward runs checks: `local` (its own check checkout) or `cluster` (a Ray task
    #: on a node with a free `stoneforge_check_slots`; needs `orchestrator.backend: ray`).
    checkOn: Literal["local", "cluster"] = "local"
    #: Look-ahead: how many candidates are checked at once. While batch k is checked on the
    #: target, batch k+1 is checked on top of k's candidate (assuming k lands), each in its own
    #: check checkout; when k lands, k+1's result stands. 1: one batch at a time.
    parallelChecks: int = Field(default=2, ge=1, le=8)

    @field_validator("quarantine")
    @classmethod
    def _quarantine_names_checks(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # A quarantined command that is not a check would silently quarantine nothing (a typo).
        checks = info.data.get("checks", [])
        unknown = [command for command in value if command not in checks]
        if unknown:
            raise ValueError(
                f"{', '.join(repr(c) for c in unknown)} is not one of merge.checks "
                "(quarantine lists check commands exactly as written there)"
            )
        return value


class WorktreeConfig(_Section):
    # A config dumped by field name (`copyFiles`) must load again, as well as the `copy` key.
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    #: Shell commands run in each new task checkout before its agent starts (`uv sync`, `npm ci`).
    setup: list[str] = []
    #: Untracked files copied from the main checkout into each new one (`.env`; globs allowed).
    #: The key is `copy` (a pydantic model has a `copy` method of its own).
    copyFiles: list[str] = Field(default=[], alias="copy")
    #: Run `setup` (and `copy`) in the steward's check checkout too, once per candidate.
    setupChecks: bool = True
    setupTimeoutS: float = Field(default=900.0, gt=0)


# -- budgets (issue 15) ----------------------------------------------------------------------------


class BudgetsConfig(_Section):
    """Spending limits; None (the default) is no limit. Tokens count every prompt token (cached
    or not) and every output token of every session; a day is a UTC calendar day."""

    #: A task's sessions reaching this end with a handoff; the task waits in budget_exceeded.
    perTaskUsd: float | None = Field(default=None, gt=0)
    perTaskTokens: int | None = Field(default=None, gt=0)
    #: A plan's sessions reaching this: none of its tasks is dispatched any more.
    perPlanUsd: float | None = Field(default=None, gt=0)
    perPlanTokens: int | None = Field(default=None, gt=0)
    #: Today's sessions reaching this: nothing is dispatched until the next UTC day.
    perDayUsd: float | None = Field(default=None, gt=0)
    perDayTokens: int | None = Field(default=None, gt=0)


class RayConfig(_Section):
    """The Ray cluster of `orchestrator.backend: ray`."""

    #: `auto`: the cluster this machine belongs to (`ray start` ran here, or RAY_ADDRESS);
    #: else `host:port` of its head, or `ray://host:10001` for Ray Client.
    address: str = "auto"
    #: Seconds between pushes of a session's uncommitted work to the remote (a recovery ref);
    #: it is pushed at every turn end as well.
    recoveryIntervalS: float = Field(default=10.0, gt=0)


class StoneforgeConfig(_Section):
    orchestrator: OrchestratorConfig = OrchestratorConfig()
    worktree: WorktreeConfig = WorktreeConfig()
    agents: AgentsConfig = AgentsConfig()
    merge: MergeConfig = MergeConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _cluster_needs_a_remote(self) -> StoneforgeConfig:
        # Nodes share no disk with the head: work travels only as refs on the remote.
        if self.orchestrator.backend == "ray" and not self.merge.remote:
            raise ValueError(
                "orchestrator.backend: ray needs merge.remote (the git remote through which "
                "the cluster's nodes and this machine exchange task branches), e.g. "
                "`merge: {remote: origin}`"
            )
        if self.merge.checkOn == "cluster" and self.orchestrator.backend != "ray":
            raise ValueError(
                "merge.checkOn: cluster runs checks on the Ray cluster and needs "
                "orchestrator.backend: ray"
            )
        return self

    @model_validator(mode="after")
    def _handoff_below_session_limit(self) -> StoneforgeConfig:
        limit = self.agents.worker.maxSessionTokens
        if self.orchestrator.handoffAtTokens >= limit:
            raise ValueError(
                f"orchestrator.handoffAtTokens ({self.orchestrator.handoffAtTokens}) must be "
                f"below agents.worker.maxSessionTokens ({limit})"
            )
        return self


DEFAULT_CONFIG_YAML = """\
# Stoneforge configuration. Every key is optional; these are the defaults.
# Documented in docs/configuration.md.
orchestrator:
  agent: claude-code
  maxConcurrent: 6
  worktreeIsolation: true
  handoffAtTokens: 140000
  worktreeDir: .stoneforge/worktrees
  maxAttempts: 3
  stacking: true   # a task may start on its blockers' branches while they are in review
agents:
  sandbox: auto   # required | auto | off: contain agents with bubblewrap
  claudeSetup: inherit   # inherit | none: your Claude Code settings, CLAUDE.md, MCP servers
  worker:   {provider: claude-code, model: claude-sonnet-4-20250514, maxSessionTokens: 200000}
  steward:  {provider: claude-code, model: claude-sonnet-4-20250514, autoMerge: true, runChecks: true,
             review: true, maxReviewRounds: 2}
  director: {provider: claude-code, model: claude-sonnet-4-20250514}
merge:
  targetBranch: main
  checks: ["python -m pytest -q"]
"""


def _key_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """Record the 1-based line of every key path in a composed YAML node tree."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            out[key_path] = key_node.start_mark.line + 1
            _key_lines(value_node, key_path, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*path, str(index))
            out[item_path] = item.start_mark.line + 1
            _key_lines(item, item_path, out)


def _line_for(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    # A missing or model-level error has no line of its own: use the nearest enclosing key.
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


# "Value error, merge.checkOn: cluster needs ..." from a model-level check.
_NAMED_KEY = re.compile(r"(?:Value error, )?(?P<key>[A-Za-z]+(?:\.[A-Za-z]+)+): (?P<rest>.*)", re.S)


def parse_config(text: str, source: str = str(CONFIG_RELPATH)) -> StoneforgeConfig:
    """Parse config text; ``source`` is the file name used in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: broken YAML: {exc.problem or exc}") from None
    if data is None:
        return StoneforgeConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping of sections")
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _key_lines(node, (), lines)
    try:
        return StoneforgeConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(str(part) for part in err["loc"])
            message = err["msg"]
            if not loc and (named := _NAMED_KEY.match(message)):
                # A check across sections names the key at fault: point at its line.
                loc, message = tuple(named["key"].split(".")), named["rest"]
            key = ".".join(loc) or "(top level)"
            line = _line_for(loc, lines)
            where = f"{source}:{line}" if line else source
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"{where}: {key}: {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def load_config(repo_root: Path) -> StoneforgeConfig:
    """Load the repository's config, or the defaults when the file does not exist."""
    path = repo_root / CONFIG_RELPATH
    if not path.exists():
        return StoneforgeConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, source=str(path))
