"""Property: whatever arrives in the queue, main's first-parent line holds only checked commits.

Hypothesis draws a sequence of merge requests (good, bad, conflicting on one shared line, and
pairs where one is red without the other) arriving between steward rounds, on branches forked
from the current main or from the first commit, with a batch size, look-ahead (`merge.parallelChecks` 1, 2 or 3), a conflict resolver that
keeps both sides or gives up, and sometimes a check that fails spuriously every Nth run. The
steward runs on a real repository with a real check script (no agents). Afterwards:

- every commit on main's first-parent line was checked and passed before it landed (the check
  logged it), and the check passes on it when run again;
- every merge request ended (merged, test_failed or conflict), good ones merged, bad ones not;
- each merged MR's branch is in main and its recorded commit is on the first-parent line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward_helpers import StewardRig, StubProvider, check_tree, checked_ok, first_parents, git
from stoneforge.models import MergeStatus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHARED = "line 1\nline 2\nline 3\n"
KINDS = ["good", "good", "bad", "conflict", "needs0", "provides0", "needs1", "provides1"]

arrival = st.tuples(
    st.sampled_from(KINDS),
    st.booleans(),  # fork from the current main (True) or from the first commit
    st.integers(min_value=0, max_value=2),  # steward rounds to run after it arrives
)


def files_for(kind: str, n: int) -> dict[str, str]:
    if kind == "good":
        return {f"good_{n}.txt": f"{n}\n"}
    if kind == "bad":
        return {f"bad_{n}": f"{n}\n", f"side_{n}.txt": "x\n"}
    if kind == "conflict":
        return {"shared.txt": f"line 1\nline 2 from {n}\nline 3\n"}
    name, pair = kind[:-1], kind[-1]  # the same content in every MR of a kind: adds merge
    return {f"{name}_{pair}": "x\n", f"{kind}_{n}.txt": "x\n"}


async def scenario(
    root: Path,
    arrivals: list[tuple[str, bool, int]],
    batch_size: int,
    resolve: bool,
    flaky_every: int,
    parallel_checks: int = 1,
) -> None:
    rig = StewardRig(
        root,
        batch_size=batch_size,
        max_attempts=1,
        provider=StubProvider(resolve=resolve),
        files={"shared.txt": SHARED},
        flaky_every=flaky_every,
        parallel_checks=parallel_checks,
    )
    first = rig.tip()
    steward = rig.make_steward()
    kinds: dict[str, str] = {}
    for n, (kind, from_main, rounds) in enumerate(arrivals):
        _, mr = rig.submit(f"{kind} {n}", files_for(kind, n), base="main" if from_main else first)
        kinds[mr.id] = kind
        for _ in range(rounds):
            await steward.round()
    await rig.drain()

    ok = checked_ok(rig.log)
    line = first_parents(rig.root)
    scratch = root.parent / "scratch"
    for commit in line:
        assert commit in ok, f"{commit[:10]} is on main's first-parent line but was never checked"
        assert check_tree(rig.root, commit, rig.script, scratch), f"{commit[:10]} is red"
    for mr in rig.store.list_merge_requests():
        kind = kinds[mr.id]
        assert mr.status in (MergeStatus.MERGED, MergeStatus.TEST_FAILED, MergeStatus.CONFLICT), (
            mr.id,
            kind,
            mr.status,
            rig.notes,
        )
        if kind == "good":
            assert mr.status == MergeStatus.MERGED, (mr.id, mr.reason, rig.notes)
        if kind == "bad":
            assert mr.status != MergeStatus.MERGED
        if mr.status == MergeStatus.MERGED:
            git(rig.root, "merge-base", "--is-ancestor", mr.branch, "main")
            assert mr.merged_commit in line
        if mr.status == MergeStatus.CONFLICT:
            assert kind == "conflict" and not resolve
    rig.close()


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    arrivals=st.lists(arrival, min_size=1, max_size=9),
    batch_size=st.sampled_from([1, 2, 3, 4, 8]),
    resolve=st.booleans(),
    flaky_every=st.sampled_from([0, 0, 3, 4]),
    parallel_checks=st.sampled_from([1, 2, 3]),
)
def test_main_first_parent_line_holds_only_checked_commits(
    arrivals: list[tuple[str, bool, int]],
    batch_size: int,
    resolve: bool,
    flaky_every: int,
    parallel_checks: int,
) -> None:
    with tempfile.TemporaryDirectory(prefix="sf-steward-prop-") as tmp:
        anyio.run(
            scenario,
            Path(tmp) / "repo",
            arrivals,
            batch_size,
            resolve,
            flaky_every,
            parallel_checks,
        )
