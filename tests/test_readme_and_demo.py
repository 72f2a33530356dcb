"""The README's commands work as written, and `sf demo` does the whole job.

The commands are parsed from README.md, so the README cannot drift from the code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GIT_ENV

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def bash_blocks(section: str) -> list[str]:
    """The ```bash blocks of a README section (up to the next heading of the same level)."""
    level = section.split(" ", 1)[0]
    start = README.index(section + "\n")
    rest = README[start + len(section) :]
    stop = re.search(rf"^{level} ", rest, flags=re.M)
    body = rest[: stop.start()] if stop else rest
    return re.findall(r"```bash\n(.*?)```", body, flags=re.S)


def test_readme_starts_with_the_two_setup_commands() -> None:
    demo, tests = bash_blocks("## Set up")
    assert demo.strip() == "scripts/setup && .venv/bin/sf demo"
    assert tests.strip() == "scripts/test"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^\s*scripts/test\b", ci, flags=re.M), "CI must run the README's test command"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_readme_demo_command_runs_the_whole_product(tmp_path: Path) -> None:
    demo = bash_blocks("## Set up")[0].strip()
    # Run it exactly as written, except that the demo keeps its project for inspection.
    command = demo + f" --dir {shlex.quote(str(tmp_path))} --keep"
    env = {**os.environ, **GIT_ENV}
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        env.pop(name, None)  # the demo needs neither
    proc = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, env=env, timeout=560
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "No AI is called in this demo" in out
    assert "5/5 tasks merged" in out and "checks on the final main: pass" in out
    project = tmp_path / "calculator"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, check=True
        ).stdout

    # Main holds every task's work, and its checks pass on it.
    for path in ("ops/multiply.py", "ops/divide.py", "cli.py", "tests/test_multiply.py"):
        assert git("cat-file", "-t", f"main:{path}").strip() == "blob", path
    calc = git("show", "main:calc.py")
    assert '"fr": "bonjour"' in calc and '"es": "hola"' in calc  # the conflict kept both
    first_parent = git("log", "--first-parent", "--format=%s", "main")
    assert first_parent.count("Merge task") == 5
    check = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-q", "-s", "tests", "-t", "."],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    # The handoff, the crash and the conflict resolution really happened.
    status = subprocess.run(
        [sys.executable, "-m", "stoneforge", "task", "list", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    tasks = {t["title"]: t for t in json.loads(status)}

    def worker_statuses(title: str) -> list[str]:
        return [s["status"] for s in tasks[title]["sessions"] if s["role"] == "worker"]

    assert worker_statuses("Add a multiply operation") == ["handed_off", "completed"]
    assert len(tasks["Add a multiply operation"]["handoffs"]) == 1
    assert worker_statuses("Add a divide operation") == ["crashed", "completed"]
    # The steward reviewed every merge request before its checks (a session of its own each),
    # and resolved the conflict in another.
    for task in tasks.values():
        [review] = task["mergeRequest"]["reviews"]
        assert review["verdict"] == "approve" and review["summary"], task["title"]
        stewards = [s for s in task["sessions"] if s["role"] == "steward"]
        assert review["sessionId"] in {s["id"] for s in stewards}
    assert out.count("review t") == 5 and "approve by steward session" in out
    resolvers = [
        s
        for t in tasks.values()
        for s in t["sessions"]
        if s["role"] == "steward" and s["id"] != t["mergeRequest"]["reviews"][0]["sessionId"]
    ]
    assert resolvers, "no steward session resolved the conflict"
    # Nothing is left running: no process of this demo (agent CLIs, checks) survives it.
    leftover = []
    for proc_dir in Path("/proc").iterdir():
        if proc_dir.name.isdigit():
            try:
                cwd = os.readlink(proc_dir / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(project)):
                leftover.append(proc_dir.name)
    assert leftover == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_readme_tour_commands_work_as_written(repo: Path) -> None:
    [tour] = bash_blocks("### 2. Real use")
    env = {**os.environ, **GIT_ENV}
    sf = [sys.executable, "-m", "stoneforge"]
    ran = 0
    for line in tour.splitlines():
        command = line.split("#", 1)[0].strip()
        if not command.startswith("sf ") or command.startswith(("sf serve", "sf doctor")):
            continue  # serving needs the hosted model; doctor needs a key (tested elsewhere)
        args = shlex.split(command)[1:]
        proc = subprocess.run(sf + args, cwd=repo, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, f"{command}: {proc.stderr}"
        expected = re.search(r"prints (?:the plan id: )?(\w+)$", line)
        if expected:
            assert proc.stdout.strip() == expected.group(1), command
        ran += 1
    assert ran >= 9


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_through_the_language_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    proc = subprocess.run(
        [sys.executable, "-m", "stoneforge", "demo", "--lsp", "--dir", str(tmp_path), "--keep"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, **GIT_ENV},
        timeout=560,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "stoneforge/createTask -> t5 Greet in Spanish" in proc.stdout
    assert "$/progress" in proc.stdout and "agents busy" in proc.stdout
    assert "5/5 tasks merged" in proc.stdout and "checks on the final main: pass" in proc.stdout
