"""Your Claude Code set-up, carried into agent sessions that each keep their own config dir.

Every session runs with a `CLAUDE_CONFIG_DIR` of its own (its transcript lives there), so the
CLI would see none of the user's `~/.claude`. Instead, at each session start:

Settings and hooks. One `settings.json` is written into the session's config dir and loaded as
the CLI's "user" source (`setting_sources=["user"]`): the user's `settings.json` (from their own
`CLAUDE_CONFIG_DIR` or `~/.claude`) with the checkout's `.claude/settings.json` merged over it,
as Claude Code itself ranks them (project over user for single values; hooks and permission
rules of both). The project source is not loaded raw any more: a checkout's settings could
otherwise point `ANTHROPIC_BASE_URL` elsewhere or replace `CLAUDE_CODE_SHELL_PREFIX`. Kept are
only `_KEPT_KEYS`; `permissions` lose `defaultMode`, `additionalDirectories` and every allow
rule for Write/Edit/NotebookEdit (an allow rule approves edits outside the checkout, which the
session's `acceptEdits` mode would refuse). Hooks of both run through the command prefix like
every command the CLI starts (:mod:`~stoneforge.agents.command_prefix`), so they never see a
credential. `env` entries are not written to the file (it is readable by the agent): they go
into the CLI's environment, under stoneforge's own variables; a project's may not set
`ANTHROPIC_*`, `CLAUDE_*`, `SF_*`, loader variables or secret-named ones.

Memory. The session's `CLAUDE.md` (read by the "user" source) is the user's `CLAUDE.md` text
followed by `@` imports of the checkout's `CLAUDE.md` and `.claude/CLAUDE.md` (imports keep their
own relative `@` imports working). CLAUDE.md files of subdirectories and `CLAUDE.local.md` are
not loaded.

MCP servers. User scope (top-level `mcpServers` of `~/.claude.json`, or of
`$CLAUDE_CONFIG_DIR/.claude.json`), the project's `.mcp.json` (of the main checkout, so an
agent's edit counts only once it has landed) and local scope (`projects[<repo>].mcpServers`
there) are offered under their names, local over project over user, passed with
`--mcp-config` beside stoneforge's own under `--strict-mcp-config` (nothing else is loaded);
`disabledMcpjsonServers` is honoured and the name `stoneforge` is ours. Each role chooses with
`agents.<role>.mcpServers: inherit | none`. A stdio server starts through the command prefix:
no `ANTHROPIC_API_KEY`, `CLAUDE_CODE_OAUTH_TOKEN` or other secret-named variable, except those
its own config's `env` names (`SF_KEEP_ENV` tells the prefix which) when it is trusted: user and
local servers, and project servers the user approved in Claude Code
(`enableAllProjectMcpServers`, `enabledMcpjsonServers`). The CLI's credentials are never kept.
Those values (and secret-looking headers of http/sse servers) are expanded here and handed to
the CLI as `SF_MCP_SECRET_<n>` variables the config refers to, so they are on no command line
and in no file.

The user's `model` setting applies to a role whose `agents.<role>.model` is `inherit`.
`agents.claudeSetup: none` leaves out everything of the user's (settings, memory, user and local
MCP servers); the project's settings, memory and `.mcp.json` still apply.

Under the sandbox the user's `~/.claude` (and own `CLAUDE_CONFIG_DIR`) stay hidden: what a session
needs of them is copied here (settings without env, memory) or passed in its environment; only
their `hooks/` directory is readable, since hook commands name scripts there.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from stoneforge.agents.claude_login import home_dir, user_config_dir
from stoneforge.agents.command_prefix import CLI_CREDENTIALS, KEEP_VAR, SECRET_CARRIER_PREFIX
from stoneforge.agents.mcp_tools import SERVER_NAME
from stoneforge.redact import is_secret_name

log = logging.getLogger(__name__)

McpScope = Literal["user", "project", "local"]

_KEPT_KEYS = (
    "permissions",
    "hooks",
    "disableAllHooks",
    "includeCoAuthoredBy",
    "attribution",
    "alwaysThinkingEnabled",
    "outputStyle",
    "language",
    "respectGitignore",
    "cleanupPeriodDays",
)
_CWD_BOUND_TOOLS = ("Write", "Edit", "NotebookEdit", "MultiEdit")
_PROJECT_ENV_DENIED = re.compile(
    r"^(ANTHROPIC_|CLAUDE_|SF_|LD_|DYLD_)|^(PATH|HOME|SHELL|NODE_OPTIONS|BASH_ENV|ENV|"
    r"PYTHONPATH|PYTHONSTARTUP|GIT_.*)$"
)
_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_HEADER = re.compile(r"authorization|cookie|key|token|secret", re.IGNORECASE)
_MEMORY_FILES = ("CLAUDE.md", ".claude/CLAUDE.md")


class SetupProblem(BaseModel):
    path: Path
    problem: str


class McpServer(BaseModel):
    """One MCP server of the user's or the project's configuration."""

    name: str
    scope: McpScope
    source: Path
    config: dict[str, Any]
    #: Its own `env` may hand it secret-named variables (see the module docstring).
    trusted: bool

    @property
    def transport(self) -> str:
        return str(self.config.get("type") or ("stdio" if "command" in self.config else "?"))


def global_config_file(env: Mapping[str, str]) -> Path:
    """`~/.claude.json` (Claude Code's user and local MCP servers), or in `$CLAUDE_CONFIG_DIR`."""
    custom = env.get("CLAUDE_CONFIG_DIR")
    return Path(custom).expanduser() / ".claude.json" if custom else home_dir(env) / ".claude.json"


def read_json(path: Path, problems: list[SetupProblem]) -> dict[str, Any]:
    """A JSON object file, `{}` when absent; a problem when unreadable. Callers must not change
    what they get: it is cached by modification time (`~/.claude.json` grows to megabytes of
    history, and every session start reads it)."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    if not path.is_file():
        return {}
    try:
        data = _parse(path, stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError) as exc:
        problems.append(SetupProblem(path=path, problem=f"cannot be read: {exc}"))
        return {}
    if not isinstance(data, dict):
        problems.append(SetupProblem(path=path, problem="is not a JSON object"))
        return {}
    return data


@functools.lru_cache(maxsize=32)
def _parse(path: Path, mtime_ns: int, size: int) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _project_entry(global_config: Mapping[str, Any], repo_root: Path) -> dict[str, Any]:
    projects = global_config.get("projects")
    if not isinstance(projects, dict):
        return {}
    for key in (str(repo_root), str(repo_root.resolve())):
        entry = projects.get(key)
        if isinstance(entry, dict):
            return entry
    return {}


def _servers(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): dict(v) for k, v in raw.items() if isinstance(v, dict)}


def _names(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else set()


def find_mcp_servers(
    repo_root: Path | None, env: Mapping[str, str]
) -> tuple[list[McpServer], list[SetupProblem]]:
    """The user's and the project's MCP servers by name (local over project over user)."""
    problems: list[SetupProblem] = []
    global_path = global_config_file(env)
    global_config = read_json(global_path, problems)
    settings = read_json(user_config_dir(env) / "settings.json", problems)
    found: dict[str, McpServer] = {}
    for name, config in _servers(global_config.get("mcpServers")).items():
        found[name] = McpServer(
            name=name, scope="user", source=global_path, config=config, trusted=True
        )
    if repo_root is not None:
        local = _project_entry(global_config, repo_root)
        project_path = repo_root / ".mcp.json"
        project = read_json(project_path, problems)
        enabled = _names(local.get("enabledMcpjsonServers")) | _names(
            settings.get("enabledMcpjsonServers")
        )
        disabled = _names(local.get("disabledMcpjsonServers")) | _names(
            settings.get("disabledMcpjsonServers")
        )
        approve_all = bool(
            local.get("enableAllProjectMcpServers") or settings.get("enableAllProjectMcpServers")
        )
        for name, config in _servers(project.get("mcpServers")).items():
            if name in disabled:
                continue
            found[name] = McpServer(
                name=name,
                scope="project",
                source=project_path,
                config=config,
                trusted=approve_all or name in enabled,
            )
        for name, config in _servers(local.get("mcpServers")).items():
            found[name] = McpServer(
                name=name, scope="local", source=global_path, config=config, trusted=True
            )
    if SERVER_NAME in found:
        server = found.pop(SERVER_NAME)
        problems.append(
            SetupProblem(
                path=server.source,
                problem=f"an MCP server named {SERVER_NAME!r} is not offered (the name is ours)",
            )
        )
    return sorted(found.values(), key=lambda s: s.name), problems


def _expand(value: str, env: Mapping[str, str]) -> str:
    """`${VAR}` and `${VAR:-default}` as Claude Code expands them in MCP configs."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


@dataclass
class _Carriers:
    """Secret values handed to the CLI as `SF_MCP_SECRET_<n>` variables."""

    env: dict[str, str] = field(default_factory=dict)

    def carry(self, value: str) -> str:
        name = f"{SECRET_CARRIER_PREFIX}{len(self.env) + 1}"
        self.env[name] = value
        return "${" + name + "}"


def cli_mcp_config(
    server: McpServer, env: Mapping[str, str], carriers: _Carriers
) -> dict[str, Any]:
    """The config handed to the CLI for `server` (see the module docstring)."""
    config = dict(server.config)
    if server.transport == "stdio":
        own = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
        kept: dict[str, str] = {}
        keep: list[str] = []
        for name, value in own.items():
            if (
                name in CLI_CREDENTIALS
                or name == KEEP_VAR
                or name.startswith(SECRET_CARRIER_PREFIX)
            ):
                continue
            if not is_secret_name(name):
                kept[name] = value
            elif server.trusted:
                kept[name] = carriers.carry(_expand(value, env))
                keep.append(name)
        if keep:
            kept[KEEP_VAR] = ",".join(keep)
        config["env"] = kept
    elif isinstance(config.get("headers"), dict):
        headers = {str(k): str(v) for k, v in config["headers"].items()}
        config["headers"] = {
            k: carriers.carry(_expand(v, env)) if _SECRET_HEADER.search(k) or "${" in v else v
            for k, v in headers.items()
        }
    return config


# -- settings ------------------------------------------------------------------------------


def _filtered_permissions(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for kind in ("allow", "deny", "ask"):
        rules = [str(r) for r in raw.get(kind) or [] if isinstance(r, str)]
        if kind == "allow":
            rules = [r for r in rules if r.split("(", 1)[0].strip() not in _CWD_BOUND_TOOLS]
        if rules:
            out[kind] = rules
    return out


def merge_settings(user: Mapping[str, Any], project: Mapping[str, Any]) -> dict[str, Any]:
    """The settings file a session gets (see the module docstring); no `env`, no `model`."""
    merged: dict[str, Any] = {}
    for source in (user, project):
        for key in _KEPT_KEYS:
            if key not in source:
                continue
            if key == "permissions":
                mine = _filtered_permissions(source[key])
                ours = merged.setdefault("permissions", {})
                for kind, rules in mine.items():
                    ours[kind] = [*ours.get(kind, []), *rules]
            elif key == "hooks" and isinstance(source[key], dict):
                hooks = merged.setdefault("hooks", {})
                for event, matchers in source[key].items():
                    if isinstance(matchers, list):
                        hooks[str(event)] = [*hooks.get(str(event), []), *matchers]
            else:
                merged[key] = source[key]
    if not merged.get("permissions"):
        merged.pop("permissions", None)
    return merged


def settings_env(user: Mapping[str, Any], project: Mapping[str, Any]) -> dict[str, str]:
    """Settings' `env` for the CLI's environment: the user's all, the project's filtered."""
    env: dict[str, str] = {}
    for name, value in (user.get("env") or {}).items():
        env[str(name)] = str(value)
    for name, value in (project.get("env") or {}).items():
        name = str(name)
        if is_secret_name(name) or _PROJECT_ENV_DENIED.match(name):
            log.info("project setting env.%s is not passed to agents", name)
            continue
        env[name] = str(value)
    env.pop(KEEP_VAR, None)
    return env


def hook_count(settings: Mapping[str, Any]) -> int:
    """The hook commands a settings object defines."""
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return 0
    return sum(
        len(m.get("hooks") or [])
        for matchers in hooks.values()
        if isinstance(matchers, list)
        for m in matchers
        if isinstance(m, dict)
    )


# -- a session -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaudeSetup:
    """What of the user's Claude Code set-up one role's sessions get."""

    mcp_servers: tuple[McpServer, ...] = ()
    #: The user's settings (with hooks) and CLAUDE.md memory; the project's come regardless.
    user: bool = True

    @property
    def mcp_tool_rules(self) -> tuple[str, ...]:
        """allowed_tools rules that allow every tool of the offered servers."""
        return tuple(f"mcp__{s.name}" for s in self.mcp_servers)


def for_role(
    repo_root: Path | None,
    *,
    inherit: bool = True,
    mcp_servers: bool = True,
    env: Mapping[str, str] | None = None,
) -> ClaudeSetup:
    """The set-up for a role's sessions. `inherit` is `agents.claudeSetup` (false: only the
    project's settings, memory and `.mcp.json`), `mcp_servers` the role's `mcpServers`."""
    servers: list[McpServer] = []
    if mcp_servers:
        found, problems = find_mcp_servers(repo_root, os.environ if env is None else env)
        for problem in problems:
            log.warning("Claude Code set-up: %s %s", problem.path, problem.problem)
        servers = [s for s in found if inherit or s.scope == "project"]
    return ClaudeSetup(mcp_servers=tuple(servers), user=inherit)


@dataclass
class PreparedSetup:
    """What `prepare` made of a set-up for one session start."""

    env: dict[str, str]  # for the CLI's environment, under stoneforge's own variables
    mcp_servers: dict[str, dict[str, Any]]  # for --mcp-config, beside stoneforge's
    secrets: list[str]  # values to redact from everything the session reports


def user_memory_file(env: Mapping[str, str]) -> Path:
    return user_config_dir(env) / "CLAUDE.md"


def project_memory_files(checkout: Path) -> list[Path]:
    return [checkout / name for name in _MEMORY_FILES if (checkout / name).is_file()]


def prepare(
    setup: ClaudeSetup, *, cwd: Path, config_dir: Path, env: Mapping[str, str]
) -> PreparedSetup:
    """Write the session's `settings.json` and `CLAUDE.md` into `config_dir` (nothing secret)
    and return what goes into the CLI's environment and MCP config.

    `env` is the environment the CLI will have (ours plus the session's), for `${VAR}`s."""
    problems: list[SetupProblem] = []
    user = read_json(user_config_dir(env) / "settings.json", problems) if setup.user else {}
    project = read_json(cwd / ".claude" / "settings.json", problems)
    for problem in problems:
        log.warning("Claude Code set-up: %s %s", problem.path, problem.problem)
    _write_or_remove(config_dir / "settings.json", _json(merge_settings(user, project)))
    memory: list[str] = []
    mine = user_memory_file(env)
    if setup.user and mine.is_file():
        memory.append(mine.read_text(encoding="utf-8", errors="replace").rstrip())
    memory += [f"@{path}" for path in project_memory_files(cwd)]
    _write_or_remove(config_dir / "CLAUDE.md", "\n\n".join(memory) + "\n" if memory else None)
    extra = settings_env(user, project)
    carriers = _Carriers()
    expand_env = {**extra, **env}
    servers = {s.name: cli_mcp_config(s, expand_env, carriers) for s in setup.mcp_servers}
    secrets = [v for k, v in extra.items() if is_secret_name(k)] + list(carriers.env.values())
    return PreparedSetup(env={**extra, **carriers.env}, mcp_servers=servers, secrets=secrets)


def _json(settings: Mapping[str, Any]) -> str | None:
    return json.dumps(settings, indent=2) + "\n" if settings else None


def _write_or_remove(path: Path, text: str | None) -> None:
    # Rewritten at every start (a resumed session too), so a removed setting goes away.
    if text is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def model_setting(env: Mapping[str, str]) -> str | None:
    """The `model` of the user's Claude Code settings, if any (for `model: inherit`)."""
    value = read_json(user_config_dir(env) / "settings.json", []).get("model")
    return value if isinstance(value, str) and value else None
