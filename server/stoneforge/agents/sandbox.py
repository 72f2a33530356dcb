"""Containment of agent processes with bubblewrap: an agent can write only its own checkout.

The whole Claude Code CLI runs inside `bwrap` (its Edit and Write tools run in the CLI process,
so wrapping only Bash commands would not do): the filesystem is read-only except the task's
checkout, the session's CLAUDE_CONFIG_DIR and a private `/tmp`; the repository's `.stoneforge/`
(the store, other tasks' checkouts, other sessions' state) is hidden. The network is shared:
the CLI must reach its model endpoint.

Every command the CLI starts (Bash tool calls, hooks, stdio MCP servers) is contained once more:
`CLAUDE_CODE_SHELL_PREFIX` names a script (:mod:`~stoneforge.agents.command_prefix`) that runs it
in a nested bubblewrap with a PID namespace of its own (so `/proc/<cli>/environ` is out of reach)
and without the credentials in its environment. The nested
sandbox needs the real `/proc` (it writes uid maps and mounts a proc of its own), which is why the
outer one binds `/proc` instead of unsharing the PID namespace: an outer `--unshare-pid` would
put the tools in the CLI's namespace, where they can read its environ anyway.

Claude Code's own answer, `CLAUDE_CODE_SUBPROCESS_ENV_SCRUB=1`, was tried and not taken: it
forces the permission mode to `default` and, for each command, mounts `/dev/null` over dotfiles
and directories of the checkout that do not exist (`.bashrc`, `.github`, `scripts`, ...), which
then show as untracked character devices, so `git add -A` fails in every command; existing ones
such as `scripts/` become read-only.

The SDK starts whatever `cli_path` names, so a session gets a generated wrapper script that
`exec`s bwrap with the CLI; it lives beside the session's config directory, outside what the
agent can write.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from stoneforge.agents.command_prefix import CLI_CREDENTIALS, SECRET_CARRIER_PREFIX, write_prefix
from stoneforge.errors import StoneforgeError
from stoneforge.redact import is_secret_name

SandboxMode = Literal["required", "auto", "off"]

__all__ = ["CLI_CREDENTIALS", "SandboxMode", "SandboxPolicy", "write_wrapper"]
# Caches that tools write under a read-only home go to the private /tmp instead.
_SANDBOX_ENV = {
    "TMPDIR": "/tmp",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "npm_config_cache": "/tmp/.npm",
    "PIP_CACHE_DIR": "/tmp/.cache/pip",
}
# Credentials kept in the home directory: hidden from the agent (its CLI has CLAUDE_CONFIG_DIR).
HIDDEN_IN_HOME = (
    ".claude",
    ".claude.json",
    ".aws",
    ".ssh",
    ".gnupg",
    ".config/gh",
    ".netrc",
    ".git-credentials",
    ".docker/config.json",
    ".npmrc",
    ".pypirc",
)
INSTALL_HINT = (
    "install bubblewrap and socat: `sudo apt-get install -y bubblewrap socat` (Debian/Ubuntu), "
    "`sudo dnf install bubblewrap socat` (Fedora); or set agents.sandbox: off in "
    ".stoneforge/config.yaml to run agents uncontained"
)


class SandboxUnavailable(StoneforgeError):
    """`agents.sandbox: required`, but bubblewrap cannot contain an agent here."""


class SandboxProbe(BaseModel):
    """Whether bubblewrap works on this machine (what `sf doctor` reports)."""

    available: bool
    bwrap: str | None
    socat: str | None
    detail: str


class SandboxStatus(BaseModel):
    """How agents will run: the configured mode and whether they are contained."""

    mode: SandboxMode
    contained: bool
    detail: str
    #: Said loudly by `sf serve`, `sf doctor` and the editor when agents run uncontained.
    warning: str | None = None


def _run(args: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


@functools.lru_cache(maxsize=4)
def probe(bwrap: str | None = None) -> SandboxProbe:
    """Run a tiny sandbox the way sessions do, with one nested inside as the CLI makes its own."""
    path = bwrap or shutil.which("bwrap")
    socat = shutil.which("socat")
    if path is None:
        return SandboxProbe(
            available=False, bwrap=None, socat=socat, detail="bubblewrap (bwrap) is not installed"
        )
    outer = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--bind", "/proc", "/proc"]
    outer += ["--tmpfs", "/tmp", "--die-with-parent", "--"]
    inner = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-user", "--unshare-pid"]
    inner += ["--proc", "/proc", "--die-with-parent", "--", "true"]
    try:
        proc = _run([*outer, *inner])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxProbe(available=False, bwrap=path, socat=socat, detail=f"{path}: {exc}")
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return SandboxProbe(
            available=False,
            bwrap=path,
            socat=socat,
            detail=f"bubblewrap cannot make a sandbox here: {why[0]}",
        )
    return SandboxProbe(
        available=True, bwrap=path, socat=socat, detail=f"bubblewrap works ({path})"
    )


def resolve(mode: SandboxMode, bwrap: str | None = None) -> SandboxStatus:
    """What `agents.sandbox: <mode>` means on this machine; raises when `required` cannot be met."""
    if mode == "off":
        return SandboxStatus(
            mode=mode,
            contained=False,
            detail="agents.sandbox is off",
            warning=(
                "agents run uncontained (agents.sandbox: off): an agent can write anywhere you "
                "can, including the target branch; only the Bash guard stands in the way"
            ),
        )
    found = probe(bwrap)
    if found.available:
        return SandboxStatus(
            mode=mode,
            contained=True,
            detail=f"agents are contained: {found.detail}",
        )
    if mode == "required":
        raise SandboxUnavailable(
            f"agents.sandbox is 'required' in .stoneforge/config.yaml, but {found.detail}; "
            + INSTALL_HINT
        )
    return SandboxStatus(
        mode=mode,
        contained=False,
        detail=found.detail,
        warning=(
            f"AGENTS RUN UNCONTAINED: {found.detail}. An agent can write anywhere you can, "
            f"including the target branch. To contain them, {INSTALL_HINT}"
        ),
    )


def report(mode: SandboxMode, bwrap: str | None = None) -> SandboxStatus:
    """`resolve` that never raises: for `sf doctor`, `sf serve` and the editor's status."""
    try:
        return resolve(mode, bwrap)
    except SandboxUnavailable as exc:
        return SandboxStatus(
            mode=mode,
            contained=False,
            detail=probe(bwrap).detail,
            warning=f"AGENTS WILL NOT START: {exc}",
        )


@dataclass(frozen=True)
class SandboxPolicy:
    """What one session may touch. Everything not named here is read-only."""

    writable: tuple[Path, ...]  # the task checkout, the session's config dir
    repo_root: Path | None = None  # readable (even under the private /tmp); `.stoneforge/` hidden
    readable: tuple[Path, ...] = ()  # files of ours the sandbox needs (the command wrapper)

    @classmethod
    def for_session(
        cls,
        cwd: Path,
        config_dir: Path,
        repo_root: Path | None = None,
        *,
        read_only: bool = False,
    ) -> SandboxPolicy:
        """A session's policy; ``read_only``: its checkout is mounted read-only (a reviewer)."""
        root = repo_root.resolve() if repo_root is not None else None
        if read_only:
            return cls(writable=(config_dir.resolve(),), repo_root=root, readable=(cwd.resolve(),))
        return cls(writable=(cwd.resolve(), config_dir.resolve()), repo_root=root)

    def bwrap_args(self, cwd: Path, unset: Iterable[str] = ()) -> list[str]:
        args = ["--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev"]
        # The nested per-command sandbox needs the real /proc (see the module docstring).
        args += ["--bind", "/proc", "/proc", "--tmpfs", "/tmp"]
        home = Path.home()
        claude_dirs = [home / ".claude"]
        if os.environ.get("CLAUDE_CONFIG_DIR"):  # the user's own, holding their login
            claude_dirs.append(Path(os.environ["CLAUDE_CONFIG_DIR"]).expanduser())
        for secret in [*(home / name for name in HIDDEN_IN_HOME), *claude_dirs[1:]]:
            if secret.is_dir() and not secret.is_symlink():
                args += ["--tmpfs", str(secret)]
            elif secret.is_file():
                args += ["--ro-bind", os.devnull, str(secret)]
        for claude in claude_dirs:
            # The user's hook scripts usually live here; their settings name them by path.
            if (claude / "hooks").is_dir():
                args += ["--ro-bind", str(claude / "hooks"), str(claude / "hooks")]
        if self.repo_root is not None:
            args += ["--ro-bind", str(self.repo_root), str(self.repo_root)]
            state = self.repo_root / ".stoneforge"
            if state.is_dir():  # the store, other tasks' checkouts, other sessions' state
                args += ["--tmpfs", str(state)]
        for path in self.readable:
            args += ["--ro-bind", str(path), str(path)]
        for path in self.writable:
            args += ["--bind", str(path), str(path)]
            git_dir = path / ".git"
            if git_dir.is_dir() and not git_dir.is_symlink():
                # A mount point cannot be renamed away (and replaced by a `.git` of the agent's),
                # and the config stays ours: no hooks path, fsmonitor or filter of its making.
                args += ["--bind", str(git_dir), str(git_dir)]
                if (git_dir / "config").is_file():
                    args += ["--ro-bind", str(git_dir / "config"), str(git_dir / "config")]
        for name, value in _SANDBOX_ENV.items():
            args += ["--setenv", name, value]
        for name in sorted(set(unset)):
            args += ["--unsetenv", name]
        args += ["--chdir", str(cwd.resolve())]
        return args


def secret_names_to_unset(env: Mapping[str, str], keep: Iterable[str] = ()) -> list[str]:
    """Secret-named variables the CLI does not need: removed before it starts (`GITHUB_TOKEN`).

    Kept: its own credentials, the carriers of MCP servers' secrets and the names in `keep`."""
    kept = {*CLI_CREDENTIALS, *keep}
    return sorted(
        k
        for k in env
        if is_secret_name(k) and k not in kept and not k.startswith(SECRET_CARRIER_PREFIX)
    )


def write_wrapper(
    dest: Path,
    cli: Path | str,
    policy: SandboxPolicy,
    cwd: Path,
    env: Mapping[str, str],
    bwrap: str | None = None,
) -> tuple[Path, dict[str, str]]:
    """Scripts that start `cli` inside the sandbox, and each command it starts in a nested one.

    Returns the script to run as the CLI and the environment variables that make the CLI use
    the nested one for its commands (Bash tool calls, hooks, stdio MCP servers).
    """
    found = probe(bwrap)
    if found.bwrap is None:
        raise SandboxUnavailable(found.detail)
    prefix = dest.with_name(dest.name.removesuffix(".sandbox.sh") + ".shell.sh")
    secrets = secret_names_to_unset(env)
    nested = [found.bwrap, "--bind", "/", "/", "--dev-bind", "/dev", "/dev"]
    nested += ["--unshare-user", "--unshare-pid", "--proc", "/proc", "--die-with-parent", "--"]
    write_prefix(prefix, nested)
    outer = SandboxPolicy(policy.writable, policy.repo_root, (*policy.readable, prefix))
    args = [found.bwrap, *outer.bwrap_args(cwd, secrets), "--", str(cli)]
    _write_script(
        dest,
        "# Written by stoneforge: this agent session's CLI, inside bubblewrap.",
        f'exec {_quote(args)} "$@"',
    )
    return dest, {"CLAUDE_CODE_SHELL_PREFIX": str(prefix)}


def _quote(args: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _write_script(dest: Path, comment: str, line: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(f"#!/bin/sh\n{comment}\n{line}\n")
    tmp.chmod(0o700)
    os.replace(tmp, dest)
