"""What the scripted model "says" in the demo, session by session.

Every step is executed for real by the Claude Code CLI: files are written, tests run, commits
made. The script includes one forced context handoff (multiply), one crashed session (divide: the
model API fails mid-task), one conflict that a steward agent resolves (french vs spanish), and a
read-only steward review of every merge request before its checks (each approves).
"""

from __future__ import annotations

from collections.abc import Callable

from stoneforge.demo.fake_model import FakeModel
from stoneforge.demo.recording import RecordedRequest
from stoneforge.demo.script import Step, Usage

MULTIPLY = "def multiply(a, b):\n    return a * b\n"
TEST_MULTIPLY = (
    "import unittest\n\nfrom ops.multiply import multiply\n\n\n"
    "class MultiplyTest(unittest.TestCase):\n"
    "    def test_multiply(self):\n        self.assertEqual(multiply(6, 7), 42)\n"
)
DIVIDE = (
    "def divide(a, b):\n"
    "    if b == 0:\n        raise ZeroDivisionError('cannot divide by zero')\n"
    "    return a / b\n"
)
TEST_DIVIDE = (
    "import unittest\n\nfrom ops.divide import divide\n\n\n"
    "class DivideTest(unittest.TestCase):\n"
    "    def test_divide(self):\n        self.assertEqual(divide(6, 3), 2)\n\n"
    "    def test_by_zero(self):\n"
    "        with self.assertRaises(ZeroDivisionError):\n            divide(1, 0)\n"
)
CLI = (
    '"""Multiply two numbers from the command line: `python cli.py 6 7`."""\n\n'
    "import sys\n\nfrom ops.multiply import multiply\n\n\n"
    "def main(argv):\n    a, b = (int(x) for x in argv[1:3])\n    return multiply(a, b)\n\n\n"
    'if __name__ == "__main__":\n    print(main(sys.argv))\n'
)
TEST_CLI = (
    "import unittest\n\nimport cli\n\n\n"
    "class CliTest(unittest.TestCase):\n"
    "    def test_main(self):\n        self.assertEqual(cli.main(['cli.py', '6', '7']), 42)\n"
)
RESOLVED_CALC = '''\
"""A tiny calculator: the demo project of Stoneforge."""

GREETINGS = {"fr": "bonjour", "es": "hola"}
GREETING = GREETINGS["fr"]


def add(a, b):
    return a + b


def sub(a, b):
    return a - b
'''

UNITTEST = "python3 -m unittest discover -q -s tests -t ."


def _commit(message: str) -> Step:
    return Step.bash(f"git add -A && git commit -q -m {message!r}")


def _when_asked_for_handoff(request: RecordedRequest) -> Step:
    if "context is nearly full" in request.all_text:
        return Step.mcp(
            "handoff",
            done="ops/multiply.py is written and committed",
            remaining="a unit test for multiply",
            filesTouched=["ops/multiply.py"],
            decisions=["multiply lives in its own module under ops/"],
            failingTests=[],
            nextStep="write tests/test_multiply.py and run the suite",
        )
    return Step.say("Continuing.")


def install(model: FakeModel, task_ids: dict[str, str], branches: dict[str, str]) -> None:
    """Register every session's script, routed by the task id in its first prompt."""

    def marker(key: str) -> str:
        return f"Stoneforge task {task_ids[key]}:"

    # The steward's reviews: one per task, each approving (its prompt names the task).
    reviews = {
        "multiply": "multiply(a, b) is right and its test checks 6 * 7.",
        "divide": "divide(a, b) refuses a zero divisor, and both cases are tested.",
        "cli": "cli.py parses two integers and multiplies them; the test calls main().",
        "french": "GREETING becomes 'bonjour'; the tests still pass.",
        "spanish": "GREETING becomes 'hola'; the tests still pass.",
    }
    for key, summary in reviews.items():
        model.add_script(
            [
                Step.bash("git log --oneline -2", text="Reading the change."),
                Step.mcp("submit_review", verdict="approve", summary=summary, comments=[]),
                Step.say("Approved."),
            ],
            marker=f"(review 1 of this task): task {task_ids[key]}:",
            name=f"steward reviews {key}",
        )
    # Continuations first: their markers are the more specific routes.
    model.add_script(
        [
            Step.write("tests/test_multiply.py", TEST_MULTIPLY, text="Picking up the handoff."),
            Step.bash(UNITTEST),
            _commit("Test multiply"),
            Step.mcp("complete_task", summary="multiply(a, b) with a unit test"),
            Step.say("Done: multiply is tested."),
        ],
        marker="Handoff from the previous session",
        name="multiply, after the handoff",
    )
    model.add_script(
        [
            Step.bash(
                f"git checkout {recovery_ref(task_ids['divide'])} -- ops/divide.py",
                text="Restoring the work saved from the crashed session.",
            ),
            Step.write("tests/test_divide.py", TEST_DIVIDE),
            Step.bash(UNITTEST),
            _commit("Add divide with tests"),
            Step.mcp("complete_task", summary="divide(a, b), refusing division by zero"),
            Step.say("Done: divide recovered and tested."),
        ],
        marker=recovery_ref(task_ids["divide"]),
        name="divide, second attempt",
    )
    model.add_script(
        [
            Step.write("ops/multiply.py", MULTIPLY, text="Writing multiply."),
            # This turn reports a context of 150,000 tokens: past the handoff threshold.
            Step(
                tool_calls=_commit("Add multiply").tool_calls,
                usage=Usage(input_tokens=4_000, cache_read_input_tokens=146_000, output_tokens=80),
            ),
            _when_asked_for_handoff,
            Step.say("Handed off."),
        ],
        marker=marker("multiply"),
        name="multiply",
    )
    model.add_script(
        [
            Step.write("ops/divide.py", DIVIDE, text="Writing divide."),
            Step.error(529, "Overloaded (scripted failure: the session crashes here)"),
        ],
        marker=marker("divide"),
        name="divide, first attempt",
    )
    model.add_script(
        [
            Step.write("cli.py", CLI, text="Writing the command line."),
            Step.write("tests/test_cli.py", TEST_CLI),
            Step.bash(UNITTEST),
            _commit("Add a command line that multiplies"),
            Step.mcp("complete_task", summary="cli.py multiplies its two arguments"),
            Step.say("Done."),
        ],
        marker=marker("cli"),
        name="cli",
    )
    for key, word in (("french", "bonjour"), ("spanish", "hola")):
        model.add_script(
            [
                Step.bash(
                    f'sed -i \'s/GREETING = "hello"/GREETING = "{word}"/\' calc.py',
                    text=f"Greeting with {word!r}.",
                    delay_s=0.5,
                ),
                Step.bash(UNITTEST),
                _commit(f"Greet with {word}"),
                Step.mcp("complete_task", summary=f"GREETING is now {word!r}"),
                Step.say("Done."),
            ],
            marker=marker(key),
            name=key,
        )
        # Whichever of the two lands second conflicts; the steward agent keeps both.
        model.add_script(
            [
                # Bash, not Write: Claude Code's Write refuses a file it has not Read first.
                Step.bash(
                    f"cat > calc.py <<'PYEOF'\n{RESOLVED_CALC}PYEOF",
                    text="Keeping both greetings.",
                ),
                Step.bash(UNITTEST),
                Step.say("Resolved: both greetings are kept, French stays the default."),
            ],
            marker=f"The merge of branch `{branches[key]}`",
            name=f"steward resolves {key}",
        )


def recovery_ref(task_id: str) -> str:
    return f"refs/stoneforge/recovery/{task_id}/1"


StepFactory = Callable[[RecordedRequest], Step]
