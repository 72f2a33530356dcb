"""The merge queue end to end: `sf serve` with real Claude Code sessions, real git, real checks.

Each test runs the orchestrator as a subprocess against the scripted model endpoint on a tiny
Python project whose check (`python check.py`: import every module of `app/`, run each `test_*`
function) is a real command. The check command also logs each commit it judged, so "main never
held an unchecked commit" is asserted from the log, and the check is run again on every commit of
main's first-parent line.

To make several merge requests meet in one batch, a test holds the landing: it edits a tracked
file in the repository's own checkout of main, where the steward will not land (nor spend check
runs) until the checkout is clean again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import run_serve, start_serve, wait_until
from stoneforge.demo import FakeModel, Step
from stoneforge.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PY = sys.executable

CHECK_PY = '''"""The project's checks: import every module of app/ and run its test_* functions."""
import importlib
import pathlib
import sys
import traceback

sys.path.insert(0, ".")
ran = failed = 0
for path in sorted(pathlib.Path("app").glob("*.py")):
    module = importlib.import_module(f"app.{path.stem}")
    for name, fn in sorted(vars(module).items()):
        if name.startswith("test_") and callable(fn):
            ran += 1
            try:
                fn()
            except Exception:
                failed += 1
                traceback.print_exc()
print(f"{ran} tests, {failed} failed")
sys.exit(1 if failed else 0)
'''

LIB = """def greet(name):
    return f"hello {name}"


def test_greet():
    assert greet("x") == "hello x"
"""

SETTINGS = """NAME = "demo"
COLORS = ["red"]


def test_settings():
    assert NAME == "demo" and "red" in COLORS
"""


def settings_with(colors: str) -> str:
    return SETTINGS.replace('COLORS = ["red"]', f"COLORS = {colors}")


def make_project(
    repo: Path, *, config: str = "", merge: str = "", checks: list[str] | None = None
) -> Path:
    """Commit the project to main and write the config; returns the check log's path.

    ``config`` goes into the ``orchestrator:`` section (and may open further sections),
    ``merge`` into ``merge:``, after ``checks`` (extra commands before the logged check).
    """
    files = {
        "check.py": CHECK_PY,
        "app/__init__.py": "",
        "app/lib.py": LIB,
        "app/settings.py": SETTINGS,
    }
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", *files)
    git(repo, "commit", "-q", "-m", "project")
    log = repo.parent / "checks.log"
    logged = f'{PY} check.py; r=$?; echo "$(git rev-parse HEAD) $r" >> {log}; exit $r'
    commands = [*(checks or []), logged]
    write_config(
        repo,
        "orchestrator:\n  retryBackoffS: 0.2\n"
        + config
        + f"merge:\n  checks: {json.dumps(commands)}\n"
        + merge,
    )
    return log


def checked_ok(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[0] for line in log.read_text().splitlines() if line.endswith(" 0")]


def assert_main_green(repo: Path, log: Path, since: str) -> list[str]:
    """Every first-parent commit of main after ``since`` passed the check before it landed,
    and passes it again now; returns them, oldest first."""
    line = git(repo, "rev-list", "--first-parent", "--reverse", f"{since}..main").split()
    ok = set(checked_ok(log))
    scratch = repo.parent / "green-scratch"
    for commit in line:
        subject = git(repo, "log", "-1", "--format=%s", commit)
        assert commit in ok, f"{commit[:10]} ({subject}) landed without a passing check"
        if scratch.exists():
            git(scratch, "checkout", "-q", "--detach", commit)
        else:
            git(repo, "worktree", "add", "-q", "--detach", str(scratch), commit)
        proc = subprocess.run([PY, "check.py"], cwd=scratch, capture_output=True, text=True)
        assert proc.returncode == 0, f"main is red at {commit[:10]} ({subject}):\n{proc.stdout}"
    return line


def open_store(repo: Path) -> Store:
    return Store(repo / ".stoneforge" / "state.db")


def hold_landing(repo: Path) -> None:
    (repo / "README.md").write_text("# demo (being edited)\n")


def release_landing(repo: Path, store: Store) -> None:
    git(repo, "checkout", "--", "README.md")
    store.record_event("test.released", "test")  # any store change wakes the steward


def serve_while(
    repo: Path,
    model: FakeModel,
    during: Callable[[], None],
    *args: str,
    timeout: float = 200,
) -> tuple[str, str]:
    """`sf serve --until-idle` in the background while ``during()`` runs; then wait for it."""
    proc = start_serve(repo, model, "--until-idle", *args)
    try:
        during()
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        print(f"sf serve stdout:\n{out}\nstderr:\n{err}")
        raise
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    return out, err


def wait_for_status(store: Store, task_ids: list[str], status: str, timeout: float = 150) -> None:
    def reached() -> bool:
        return all(store.get_task(t).status.value == status for t in task_ids)

    assert wait_until(reached, timeout=timeout, interval=0.2), {
        t: store.get_task(t).status.value for t in task_ids
    }


def write_file(path: str, content: str, **kw: object) -> Step:
    """Write a file through Bash (the Write tool refuses to overwrite a file it has not Read)."""
    return Step.bash(f"mkdir -p $(dirname {path}) && cat > {path} <<'EOF'\n{content}EOF", **kw)


def worker(path: str, content: str, message: str, *, delay_s: float = 0.0) -> list[Step]:
    return [
        write_file(path, content, delay_s=delay_s),
        Step.bash(f"git add -A && git commit -q -m {message!r}"),
        Step.mcp("complete_task", summary=message),
        Step.say(f"Done: {message}."),
    ]


def prompts_of(model: FakeModel, marker: str) -> list[str]:
    """The first user message of each session routed by ``marker`` (one per session)."""
    seen: list[str] = []
    for request in model.main_requests(marker):
        text = request.first_user_text
        if text not in seen:
            seen.append(text)
    return seen


def task_json(repo: Path, task_id: str) -> dict:
    """What `sf task show --json` prints, read from the store (no CLI start-up per look)."""
    with open_store(repo) as store:
        return store.get_task(task_id).wire()


def create_task(repo: Path, title: str, priority: int = 3) -> str:
    with open_store(repo) as store:
        return store.create_task(title, priority=priority).id


# -- tests ---------------------------------------------------------------------------------------


def test_green_alone_red_together_never_reaches_main(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo, config="  maxAttempts: 2\n")
    start = git(repo, "rev-parse", "main")
    store = open_store(repo)
    rename = store.create_task("Rename greet to salute", priority=2).id  # first in the queue
    farewell = store.create_task("Add a farewell").id
    renamed = LIB.replace("greet", "salute")
    fake_model.add_script(
        worker("app/lib.py", renamed, "Rename greet to salute", delay_s=0.5),
        marker=f"Stoneforge task {rename}:",
    )
    uses_old = 'from app.lib import greet\n\n\ndef test_farewell():\n    assert greet("bye")\n'
    uses_new = uses_old.replace("greet", "salute")
    fake_model.add_script(
        worker("app/farewell.py", uses_old, "Add a farewell")
        + worker("app/farewell.py", uses_new, "Call salute, the new name"),
        marker=f"Stoneforge task {farewell}:",
    )
    hold_landing(repo)

    def both_ready_then_release() -> None:
        wait_for_status(store, [rename, farewell], "review")
        release_landing(repo, store)

    out, _ = serve_while(repo, fake_model, both_ready_then_release, "--max-concurrent", "2")
    assert "bisecting 2 merge requests" in out
    assert task_json(repo, rename)["status"] == "merged"
    done = task_json(repo, farewell)
    assert done["status"] == "merged" and done["attempts"] == 2
    # Its first merge request failed on top of the rename, also on the retry.
    first, second = [m for m in store.list_merge_requests() if m.task_id == farewell]
    assert first.status.value == "test_failed"
    assert [c.exit_code for c in first.checks] == [1, 1]
    assert "cannot import name 'greet'" in first.checks[0].output_tail
    assert second.status.value == "merged"
    # The worker's next session was told why, with the failing output.
    prompts = prompts_of(fake_model, f"Stoneforge task {farewell}:")
    assert len(prompts) == 2
    assert "cannot import name 'greet'" in prompts[1] and "Note from the orchestrator" in prompts[1]
    line = assert_main_green(repo, log, start)
    assert len(line) == 2  # the rename, then the fixed farewell: never the red pair
    assert git(repo, "show", "main:app/farewell.py") == uses_new.strip()
    store.close()


def test_a_failing_check_sends_the_task_back_then_fails_it(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo, config="  maxAttempts: 2\n")
    start = git(repo, "rev-parse", "main")
    task = create_task(repo, "Add a broken helper")
    broken = "def helper():\n    return 1\n\n\ndef test_helper():\n    assert helper() == 2\n"
    fake_model.add_script(
        [
            *worker("app/helper.py", broken, "Add helper"),
            Step.say("I looked at the failure and believe the code is right."),
        ],
        marker=f"Stoneforge task {task}:",
    )
    code, out, err = run_serve(repo, fake_model, timeout=200)
    assert code == 0, err
    shown = task_json(repo, task)
    assert shown["status"] == "failed" and shown["attempts"] == 2
    mrs = sf("merge", "list", "--json").json()["mergeRequests"]
    assert [m["status"] for m in mrs] == ["test_failed", "test_failed"]
    assert mrs[0]["checks"][0]["exitCode"] == 1
    assert "3 tests, 1 failed" in mrs[0]["checks"][0]["outputTail"]
    prompts = prompts_of(fake_model, f"Stoneforge task {task}:")
    assert len(prompts) == 2
    assert "assert helper() == 2" in prompts[1] and "3 tests, 1 failed" in prompts[1]
    assert git(repo, "rev-parse", "main") == start  # main untouched
    assert len(checked_ok(log)) == 0


def test_a_flaky_check_lands_with_the_flake_recorded(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    flag = repo.parent / "flaked-once"
    flaky = f"test -e {flag} || {{ touch {flag}; echo 'network hiccup'; exit 1; }}"
    log = make_project(repo, checks=[flaky])
    start = git(repo, "rev-parse", "main")
    task = create_task(repo, "Add colours")
    fake_model.add_script(
        worker("app/settings.py", settings_with('["red", "green"]'), "Add green"),
        marker=f"Stoneforge task {task}:",
    )
    code, out, err = run_serve(repo, fake_model, timeout=200)
    assert code == 0, err
    mr = task_json(repo, task)["mergeRequest"]
    assert mr["status"] == "merged"
    flaky_run, logged_run = mr["checks"]
    assert flaky_run["command"] == flaky and flaky_run["flaky"] is True
    assert flaky_run["exitCode"] == 0 and "network hiccup" in flaky_run["outputTail"]
    assert logged_run["flaky"] is False and logged_run["exitCode"] == 0
    assert "flaky" in out
    assert assert_main_green(repo, log, start) == [mr["mergedCommit"]]


def test_a_conflict_is_resolved_by_the_steward_agent_and_checked(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo)
    start = git(repo, "rev-parse", "main")
    store = open_store(repo)
    green = store.create_task("Add green", priority=2).id  # first in the queue
    blue = store.create_task("Add blue").id
    fake_model.add_script(
        worker("app/settings.py", settings_with('["red", "green"]'), "Add green"),
        marker=f"Stoneforge task {green}:",
    )
    fake_model.add_script(
        worker("app/settings.py", settings_with('["red", "blue"]'), "Add blue"),
        marker=f"Stoneforge task {blue}:",
    )
    both = settings_with('["red", "green", "blue"]')
    # The steward's check checkout has a name of its own (`_steward-<id>`): the session's cwd.
    steward = fake_model.add_script(
        [
            Step.bash("git diff", text="Looking at the conflict."),
            lambda req: Step.tool("Read", file_path=f"{req.cwd}/app/settings.py"),
            lambda req: Step.write(f"{req.cwd}/app/settings.py", both),
            Step.bash("git add app/settings.py"),
            Step.say("Kept both colours."),
        ],
        marker=f"The merge of branch `sf/{blue}-",
    )
    hold_landing(repo)

    def both_ready_then_release() -> None:
        wait_for_status(store, [green, blue], "review")
        release_landing(repo, store)

    out, _ = serve_while(repo, fake_model, both_ready_then_release, "--max-concurrent", "2")
    assert steward.finished, out
    assert "resolves it" in out and "merged by the steward agent" in out
    for task_id in (green, blue):
        assert task_json(repo, task_id)["status"] == "merged"
    shown = task_json(repo, blue)
    assert [(s["role"], s["status"]) for s in shown["sessions"]] == [
        ("worker", "completed"),
        ("steward", "completed"),
    ]
    mr = shown["mergeRequest"]
    assert mr["checks"][0]["exitCode"] == 0
    assert git(repo, "show", "main:app/settings.py") == both.strip()
    landed = assert_main_green(repo, log, start)
    assert landed[-1] == mr["mergedCommit"]
    parents = git(repo, "rev-list", "--parents", "-n", "1", mr["mergedCommit"]).split()[1:]
    assert parents[0] == landed[0]  # resolved on top of green's merge
    store.close()


def test_an_unresolvable_conflict_yields_a_conflict_mr_and_a_fix_task(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo)
    start = git(repo, "rev-parse", "main")
    store = open_store(repo)
    green = store.create_task("Add green", priority=2).id  # first in the queue
    blue = store.create_task("Add blue").id
    fake_model.add_script(
        worker("app/settings.py", settings_with('["red", "green"]'), "Add green"),
        marker=f"Stoneforge task {green}:",
    )
    fake_model.add_script(
        worker("app/settings.py", settings_with('["red", "blue"]'), "Add blue"),
        marker=f"Stoneforge task {blue}:",
    )
    fake_model.add_script(
        [Step.say("Green and blue exclude each other; a human must choose.")],
        marker=f"The merge of branch `sf/{blue}-",
    )
    # The fix task the steward will create is the third task.
    both = settings_with('["red", "green", "blue"]')
    fake_model.add_script(
        worker("app/settings.py", both, "Re-apply blue on top of green"),
        marker="Stoneforge task t3:",
    )
    hold_landing(repo)

    def both_ready_then_release() -> None:
        wait_for_status(store, [green, blue], "review")
        release_landing(repo, store)

    out, _ = serve_while(repo, fake_model, both_ready_then_release, "--max-concurrent", "2")
    assert "conflict markers remain in app/settings.py" in out
    shown = task_json(repo, blue)
    assert shown["status"] == "failed" and "fix task t3" in shown["note"]
    assert shown["mergeRequest"]["status"] == "conflict"
    fix = task_json(repo, "t3")
    assert fix["title"] == "Resolve merge conflict: Add blue"
    assert fix["priority"] == 1 and fix["dependsOn"] == []
    branches = {task_json(repo, t)["branch"] for t in (green, blue)}
    assert all(branch in fix["description"] for branch in branches), fix["description"]
    assert "app/settings.py" in fix["description"]
    # The fix task ran like any other and its work landed.
    assert fix["status"] == "merged"
    assert git(repo, "show", "main:app/settings.py") == both.strip()
    assert len(assert_main_green(repo, log, start)) == 2
    store.close()


def test_auto_merge_off_waits_for_approval_and_approve_rechecks_a_moved_target(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo, config="agents:\n  steward: {autoMerge: false}\n")
    start = git(repo, "rev-parse", "main")
    first = create_task(repo, "Add green")
    second = create_task(repo, "Add a farewell")
    fake_model.add_script(
        worker("app/settings.py", settings_with('["red", "green"]'), "Add green"),
        marker=f"Stoneforge task {first}:",
    )
    farewell = 'from app.lib import greet\n\n\ndef test_farewell():\n    assert greet("bye")\n'
    fake_model.add_script(
        worker("app/farewell.py", farewell, "Add a farewell"),
        marker=f"Stoneforge task {second}:",
    )
    code, _, err = run_serve(repo, fake_model, "--max-concurrent", "2", timeout=200)
    assert code == 0, err  # idle: both wait for a human
    waiting = {m["taskId"]: m for m in sf("merge", "list", "--json").json()["mergeRequests"]}
    assert {m["status"] for m in waiting.values()} == {"awaiting_approval"}
    assert git(repo, "rev-parse", "main") == start
    one, two = waiting[first], waiting[second]
    assert one["candidateCommit"] in checked_ok(log) and two["candidateCommit"] in checked_ok(log)

    # The target has not moved since the check: approve lands the checked commit as is.
    sf("merge", "approve", one["id"])
    assert git(repo, "rev-parse", "main") == one["candidateCommit"]
    assert task_json(repo, first)["status"] == "merged"

    # Now it has: the approved MR goes back to the queue to be rebuilt and checked again.
    sf("merge", "approve", two["id"])
    again = task_json(repo, second)["mergeRequest"]
    assert again["status"] == "pending" and "checked again" in again["reason"]
    assert git(repo, "rev-parse", "main") == one["candidateCommit"]
    code, out, err = run_serve(repo, fake_model, timeout=200)
    assert code == 0, err
    landed = task_json(repo, second)["mergeRequest"]
    assert landed["status"] == "merged"
    assert landed["mergedCommit"] != two["candidateCommit"]
    assert git(repo, "rev-parse", f"{landed['mergedCommit']}^1") == one["candidateCommit"]
    assert assert_main_green(repo, log, start) == [one["candidateCommit"], landed["mergedCommit"]]


def test_reject_sends_the_task_back_with_the_reason(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo, config="agents:\n  steward: {autoMerge: false}\n")
    start = git(repo, "rev-parse", "main")
    task = create_task(repo, "Add a colour")
    fake_model.add_script(
        worker("app/settings.py", settings_with('["red", "purple"]'), "Add purple")
        + worker("app/settings.py", settings_with('["red", "green"]'), "Use green instead"),
        marker=f"Stoneforge task {task}:",
    )
    code, _, err = run_serve(repo, fake_model, timeout=200)
    assert code == 0, err
    (mr,) = sf("merge", "list", "--json").json()["mergeRequests"]
    assert mr["status"] == "awaiting_approval"
    sf("merge", "reject", mr["id"], "--reason", "Purple is not in the palette; use green.")
    shown = task_json(repo, task)
    assert shown["status"] == "open" and shown["mergeRequest"]["status"] == "rejected"
    code, _, err = run_serve(repo, fake_model, timeout=200)
    assert code == 0, err
    prompts = prompts_of(fake_model, f"Stoneforge task {task}:")
    assert len(prompts) == 2 and "Purple is not in the palette; use green." in prompts[1]
    retried = task_json(repo, task)["mergeRequest"]
    assert retried["id"] != mr["id"] and retried["status"] == "awaiting_approval"
    sf("merge", "approve", retried["id"])
    assert git(repo, "show", "main:app/settings.py") == settings_with('["red", "green"]').strip()
    assert assert_main_green(repo, log, start) == [retried["candidateCommit"]]


def test_a_blocker_lands_before_its_dependent(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo, merge="  batchSize: 1\n")
    start = git(repo, "rev-parse", "main")
    store = open_store(repo)
    # The dependent is older, more urgent and finishes first; the dependency is found while
    # both are already running.
    dependent = store.create_task("Use the palette", priority=1).id
    blocker = store.create_task("Add the palette", priority=5).id
    fake_model.add_script(
        worker("app/uses.py", "from app.lib import greet\n", "Use it", delay_s=3.0),
        marker=f"Stoneforge task {dependent}:",
    )
    fake_model.add_script(
        worker("app/palette.py", "PALETTE = ['red']\n", "Add palette", delay_s=12.0),
        marker=f"Stoneforge task {blocker}:",
    )

    def add_dependency_while_running() -> None:
        wait_for_status(store, [dependent, blocker], "in_progress", timeout=60)
        store.add_dependency(dependent, blocker)

    out, _ = serve_while(repo, fake_model, add_dependency_while_running, "--max-concurrent", "2")
    dep_mr = task_json(repo, dependent)["mergeRequest"]
    block_mr = task_json(repo, blocker)["mergeRequest"]
    assert dep_mr["createdAt"] < block_mr["createdAt"]  # the dependent's work was ready first
    assert f"waits for its blocker(s) {blocker}" in out
    line = assert_main_green(repo, log, start)
    subjects = [git(repo, "log", "-1", "--format=%s", c) for c in line]
    assert subjects == [
        f"Merge task {blocker}: Add the palette",
        f"Merge task {dependent}: Use the palette",
    ]
    store.close()


def test_a_batch_of_eight_with_one_bad_lands_the_other_seven(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = make_project(repo, config="  maxAttempts: 1\n", merge="  batchSize: 8\n")
    start = git(repo, "rev-parse", "main")
    store = open_store(repo)
    ids = [store.create_task(f"Module {n}").id for n in range(8)]
    bad = ids[5]
    for n, task_id in enumerate(ids):
        body = f"def value():\n    return {n}\n\n\ndef test_value():\n    assert value() == {n}\n"
        if task_id == bad:
            body = body.replace(f"assert value() == {n}", "assert value() == -1")
        fake_model.add_script(
            worker(f"app/mod{n}.py", body, f"Add module {n}"),
            marker=f"Stoneforge task {task_id}:",
        )
    hold_landing(repo)

    def all_ready_then_release() -> None:
        wait_for_status(store, ids, "review", timeout=170)
        release_landing(repo, store)

    started = time.monotonic()
    out, _ = serve_while(repo, fake_model, all_ready_then_release, "--max-concurrent", "4")
    statuses = {t: task_json(repo, t)["status"] for t in ids}
    assert statuses.pop(bad) == "failed"
    assert set(statuses.values()) == {"merged"}, statuses
    runs = log.read_text().splitlines()
    # One batch: the first check saw all eight modules together.
    first_checked = runs[0].split()[0]
    modules = git(repo, "ls-tree", "--name-only", f"{first_checked}:app").split()
    assert sum(name.startswith("mod") for name in modules) == 8
    assert len(runs) <= 8, runs  # bisection with inference: at most 8 runs for 8 with one bad
    line = assert_main_green(repo, log, start)
    for n, task_id in enumerate(ids):
        present = (repo / "app" / f"mod{n}.py").exists()
        assert present == (task_id != bad)
    assert len(line) == 3, (line, time.monotonic() - started)  # the passing groups
    store.close()
