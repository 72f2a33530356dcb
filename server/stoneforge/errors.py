"""The error types every layer raises; the CLI and the language server turn them into messages."""

from __future__ import annotations


class StoneforgeError(Exception):
    """A problem the user can act on; the message says what was wrong and where."""


class ConfigError(StoneforgeError):
    """`.stoneforge/config.yaml` is broken, has an unknown key, or a value of the wrong type."""


class NotARepositoryError(StoneforgeError):
    """The command was run outside a git repository."""


class NotInitializedError(StoneforgeError):
    """The repository has no `.stoneforge/` yet: `sf init` first."""


class NotFoundError(StoneforgeError):
    """An id that names no plan, task, session or merge request."""


class InvalidInputError(StoneforgeError):
    """A value that is out of range, empty, or refused by a rule (self-dependency, cycle...)."""


class InvalidTransitionError(StoneforgeError):
    """The entity is not in a state that allows the requested change."""


class LeaseHeldError(StoneforgeError):
    """Another orchestrator already dispatches for this repository."""


class StaleAttemptError(InvalidTransitionError):
    """A write on behalf of a task attempt that is no longer the task's current one."""


class LeaseLostError(StoneforgeError):
    """A fenced side effect by a process that no longer holds the orchestrator lease.

    Deliberately not an :class:`InvalidTransitionError`: code that shrugs off a lost race
    ("cancelled meanwhile") must never shrug off a lost lease by accident.
    """


class StoreBusyError(StoneforgeError):
    """The store stayed locked by another writer (or a long read) past the busy timeout.

    The timeout is shorter than the orchestrator lease's time to live, so a stalled write fails
    while the lease still holds instead of finishing after another process took over.
    """
