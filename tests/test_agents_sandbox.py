"""agents.sandbox: what each mode means on this machine, and the bubblewrap command a session
gets (run for real: a sandboxed shell can write its checkout and nothing of the repository)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stoneforge.agents.sandbox import (
    SandboxPolicy,
    SandboxUnavailable,
    probe,
    report,
    resolve,
    write_wrapper,
)
from stoneforge.config import ConfigError, load_config

MISSING = "/nonexistent/bwrap"


def test_required_without_bubblewrap_is_a_clear_error() -> None:
    with pytest.raises(SandboxUnavailable) as caught:
        resolve("required", MISSING)
    message = str(caught.value)
    assert "agents.sandbox is 'required'" in message
    assert "sudo apt-get install -y bubblewrap socat" in message
    assert "agents.sandbox: off" in message  # the other way out
    assert report("required", MISSING).warning.startswith("AGENTS WILL NOT START")


def test_auto_without_bubblewrap_runs_with_a_loud_warning() -> None:
    status = resolve("auto", MISSING)
    assert not status.contained
    assert status.warning and status.warning.startswith("AGENTS RUN UNCONTAINED")
    assert "apt-get install -y bubblewrap socat" in status.warning


def test_off_never_contains_and_says_so() -> None:
    status = resolve("off")
    assert not status.contained and "uncontained" in (status.warning or "")


def test_config_key_accepts_the_three_modes_and_yaml_off(tmp_path: Path) -> None:
    (tmp_path / ".stoneforge").mkdir()
    config = tmp_path / ".stoneforge" / "config.yaml"
    assert load_config(tmp_path).agents.sandbox == "auto"
    for written, meant in (("required", "required"), ("off", "off"), ("'off'", "off")):
        config.write_text(f"agents:\n  sandbox: {written}\n")
        assert load_config(tmp_path).agents.sandbox == meant
    config.write_text("agents:\n  sandbox: maybe\n")
    with pytest.raises(ConfigError, match="agents.sandbox"):
        load_config(tmp_path)


@pytest.mark.skipif(not probe().available, reason="bubblewrap does not work here")
def test_the_wrapper_contains_a_shell(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    checkout = repo / ".stoneforge" / "worktrees" / "t1"
    other = repo / ".stoneforge" / "worktrees" / "t2"
    config_dir = repo / ".stoneforge" / "agents" / "s1"
    for d in (checkout, other, config_dir):
        d.mkdir(parents=True)
    (repo / "README.md").write_text("main checkout\n")
    (other / "theirs.txt").write_text("another task\n")
    policy = SandboxPolicy.for_session(checkout, config_dir, repo)
    env = {"ANTHROPIC_API_KEY": "sk-ant-api03-SANDBOX-TEST", "GITHUB_TOKEN": "ghp_x" * 4}
    script, extra = write_wrapper(
        repo / ".stoneforge" / "agents" / "s1.sandbox.sh", "/bin/sh", policy, checkout, env
    )
    shell = (
        "echo mine > mine.txt; echo cfg > $CLAUDE_CONFIG_DIR/state; echo tmp > /tmp/t; "
        f"echo x > {repo}/README.md; echo x > {repo}/new.txt; ls {other}; "
        f"ls {repo}/.stoneforge; echo gh=[$GITHUB_TOKEN] key=[$ANTHROPIC_API_KEY]; "
        f'{extra["CLAUDE_CODE_SHELL_PREFIX"]} "echo inner key=[\\$ANTHROPIC_API_KEY]; '
        "ls /proc | grep -c '^[0-9]'\""
    )
    proc = subprocess.run(
        [str(script), "-c", shell],
        env={"PATH": "/usr/bin:/bin", "CLAUDE_CONFIG_DIR": str(config_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout + proc.stderr
    assert (checkout / "mine.txt").read_text() == "mine\n"
    assert (config_dir / "state").read_text() == "cfg\n"
    assert (repo / "README.md").read_text() == "main checkout\n"
    assert not (repo / "new.txt").exists() and not (tmp_path / "t").exists()
    assert out.count("Read-only file system") == 2, out
    assert "theirs.txt" not in out  # other tasks' checkouts are hidden
    assert "gh=[] key=[sk-ant-api03-SANDBOX-TEST]" in out  # the CLI keeps its own key...
    assert "inner key=[]" in out  # ...its commands do not get it
    lines = proc.stdout.splitlines()
    visible = int(lines[lines.index("inner key=[]") + 1])
    # A PID namespace of their own: bwrap, the shell, ls and grep; not the CLI, not us.
    assert visible <= 4, out
