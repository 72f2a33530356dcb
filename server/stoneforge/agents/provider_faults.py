"""Which session failures are the provider's fault, not the task's.

An overloaded or failing API, a refused connection, a rate limit or an account out of credit
ends a session through no fault of the task: the orchestrator must not spend one of the task's
attempts on it (it pauses or throttles dispatch instead). This module only classifies, from what
the CLI reports: the HTTP status of the failing request, or its error text when it has none
(a connection that never got an answer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from stoneforge.agents.events import ApiRetry, Failure, FailureKind


class FaultKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429: this credential, for a while
    OUT_OF_CREDIT = "out_of_credit"  # billing: this credential, until someone pays
    OVERLOADED = "overloaded"  # 529
    SERVER_ERROR = "server_error"  # 5xx, 408
    UNREACHABLE = "unreachable"  # connection refused, reset, timed out, no DNS


#: Faults of one credential (another key may carry on); the rest are the provider's.
CREDENTIAL_FAULTS = frozenset({FaultKind.RATE_LIMITED, FaultKind.OUT_OF_CREDIT})

_STATUS_IN_TEXT = re.compile(r"API Error: (?:[^()\d]*\()?(\d{3})\b")
_UNREACHABLE_TEXT = re.compile(
    r"ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|Connection (?:refused|error|reset)"
    r"|socket hang up|fetch failed|Request timed out",
    re.IGNORECASE,
)
_CREDIT_TEXT = re.compile(r"credit balance|billing|insufficient[_ ]quota", re.IGNORECASE)
_RETRY_AFTER_TEXT = re.compile(r"retry[- ]after[:= ]+(\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class ProviderFault:
    kind: FaultKind
    message: str
    status: int | None = None
    #: Seconds the API asked us to wait (`retry-after`), when the CLI let us know.
    retry_after_s: float | None = None

    @property
    def credential_only(self) -> bool:
        return self.kind in CREDENTIAL_FAULTS

    @property
    def label(self) -> str:
        """A short human name: "529 overloaded", "connection refused / unreachable"."""
        what = self.kind.value.replace("_", " ")
        return f"{self.status} {what}" if self.status else what


def _kind_of_status(status: int, message: str) -> FaultKind | None:
    if status == 429:
        return FaultKind.RATE_LIMITED
    if status == 529:
        return FaultKind.OVERLOADED
    if status >= 500 or status == 408:
        return FaultKind.SERVER_ERROR
    if status in (400, 402, 403) and _CREDIT_TEXT.search(message):
        return FaultKind.OUT_OF_CREDIT
    return None


def provider_fault(
    failure: Failure | None, last_retry: ApiRetry | None = None
) -> ProviderFault | None:
    """The provider fault ``failure`` stands for, or None when it is the task's (or nobody's).

    ``last_retry``: the CLI's last `api_retry` message of the session; its delay is the best
    `retry-after` the CLI exposes (the final error carries none).
    """
    if failure is None or failure.kind not in (
        FailureKind.API_ERROR,
        FailureKind.STARTUP,
        FailureKind.CRASHED,
    ):
        return None
    message = failure.message
    status = failure.status
    if status is None and (found := _STATUS_IN_TEXT.search(message)) is not None:
        status = int(found.group(1))
    kind: FaultKind | None
    if status is not None:
        kind = _kind_of_status(status, message)
    elif _UNREACHABLE_TEXT.search(message) or failure.kind == FailureKind.API_ERROR:
        # The CLI reports an API error without a status only when no answer came at all.
        kind = FaultKind.UNREACHABLE
    else:
        kind = None
    if kind is None:
        return None
    retry_after: float | None = None
    if (found := _RETRY_AFTER_TEXT.search(message)) is not None:
        retry_after = float(found.group(1))
    elif (
        last_retry is not None
        and last_retry.delay_s is not None
        and last_retry.status in (None, status)
    ):
        retry_after = last_retry.delay_s
    return ProviderFault(kind=kind, message=message, status=status, retry_after_s=retry_after)
