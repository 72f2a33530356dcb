"""Background work: it runs in a thread of its own at a lower priority, the git processes it
starts too, and its caller gets its result or its error as if it had run the work itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stoneforge.background import in_background


def _nice_of_a_child() -> int:
    out = subprocess.run(["cat", "/proc/self/stat"], capture_output=True, text=True, check=True)
    return int(out.stdout.rsplit(")", 1)[1].split()[16])  # field 19: nice


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_a_process_started_in_the_background_runs_at_a_lower_priority() -> None:
    here = _nice_of_a_child()
    assert in_background(_nice_of_a_child, "test-background") > here
    assert _nice_of_a_child() == here  # the caller's own thread is left as it was


def test_the_caller_gets_the_result_or_the_error() -> None:
    assert in_background(lambda: 42, "test-background") == 42

    def fails() -> None:
        raise ValueError("the clean-up failed")

    with pytest.raises(ValueError, match="the clean-up failed"):
        in_background(fails, "test-background")
