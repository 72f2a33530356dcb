"""The demo's throwaway project: a tiny Python package with a unittest suite as its check.

And the plan "Demo sprint": two independent features, one task that depends on another, and two
tasks that change the same line (so the merge queue has a conflict to resolve).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CALC = '''\
"""A tiny calculator: the demo project of Stoneforge."""

GREETING = "hello"


def add(a, b):
    return a + b


def sub(a, b):
    return a - b
'''

TEST_CALC = """\
import unittest

import calc


class CalcTest(unittest.TestCase):
    def test_add_and_sub(self):
        self.assertEqual(calc.add(2, 3), 5)
        self.assertEqual(calc.sub(2, 3), -1)

    def test_greeting_is_text(self):
        self.assertIsInstance(calc.GREETING, str)


if __name__ == "__main__":
    unittest.main()
"""

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Stoneforge demo",
    "GIT_AUTHOR_EMAIL": "demo@stoneforge.invalid",
    "GIT_COMMITTER_NAME": "Stoneforge demo",
    "GIT_COMMITTER_EMAIL": "demo@stoneforge.invalid",
}


def check_command() -> str:
    """The project's check, with this very interpreter (no `python` on PATH needed)."""
    return f"{sys.executable} -m unittest discover -q -s tests -t ."


@dataclass(frozen=True)
class DemoTask:
    key: str
    title: str
    description: str
    priority: int
    depends_on: tuple[str, ...] = ()


DEMO_TASKS = (
    DemoTask(
        "multiply",
        "Add a multiply operation",
        "Add ops/multiply.py with multiply(a, b) and a unit test.",
        2,
    ),
    DemoTask(
        "divide",
        "Add a divide operation",
        "Add ops/divide.py with divide(a, b) that refuses division by zero, with tests.",
        2,
    ),
    DemoTask(
        "cli",
        "Add a command line that multiplies",
        "Add cli.py: `python cli.py 6 7` prints 42, using ops.multiply. Test it.",
        3,
        ("multiply",),
    ),
    DemoTask("french", "Greet in French", "Change GREETING in calc.py to 'bonjour'.", 3),
    DemoTask("spanish", "Greet in Spanish", "Change GREETING in calc.py to 'hola'.", 3),
)


def _git(root: Path, *args: str) -> None:
    import os

    subprocess.run(
        ["git", *args],
        cwd=root,
        check=True,
        capture_output=True,
        env={**os.environ, **GIT_IDENTITY},
    )


def make_project(root: Path) -> None:
    """A git repository on `main` with the calculator and its passing test suite."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "calc.py").write_text(CALC)
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_calc.py").write_text(TEST_CALC)
    (root / "ops").mkdir(exist_ok=True)
    (root / "ops" / "__init__.py").write_text('"""Operations of the calculator."""\n')
    (root / ".gitignore").write_text("__pycache__/\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.name", GIT_IDENTITY["GIT_AUTHOR_NAME"])
    _git(root, "config", "user.email", GIT_IDENTITY["GIT_AUTHOR_EMAIL"])
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "The calculator, with its tests")


def demo_config() -> str:
    return (
        "# Written by `sf demo`.\n"
        "orchestrator:\n"
        "  maxConcurrent: 4\n"
        "  retryBackoffS: 0.5\n"
        "  providerBackoffS: 1\n"
        "merge:\n"
        f"  checks: [{check_command()!r}]\n"
        "  checkTimeoutS: 120\n"
    )
