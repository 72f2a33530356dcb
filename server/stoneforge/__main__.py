"""`python -m stoneforge` is `sf`."""

from stoneforge.cli import run

run()
