"""Stoneforge: many Claude Code agents on one repository, landed through a merge queue."""

__version__ = "0.1.0"
