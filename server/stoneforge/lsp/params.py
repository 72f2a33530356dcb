"""Pydantic models of the custom requests' params: the boundary where bad input is refused.

Unknown extra fields are ignored (clients add `workDoneToken` and the like); wrong types,
missing fields and out-of-range values are errors that name the field.
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from stoneforge.models import MergeStatus, TaskStatus


class Params(BaseModel):
    # Strict scalars: "3" is not a priority and 1 is not a title; enums still take their strings.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class NoParams(Params):
    pass


class CreateTaskParams(Params):
    title: StrictStr = Field(min_length=1, max_length=500)
    description: StrictStr = ""
    plan_id: StrictStr | None = None
    priority: StrictInt = Field(default=3, ge=1, le=5)
    depends_on: list[StrictStr] = Field(default_factory=list)
    #: An existing local or remote branch the task continues (default: a new one).
    branch: StrictStr | None = Field(default=None, min_length=1, max_length=250)

    @field_validator("title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class CreatePlanParams(Params):
    title: StrictStr = Field(min_length=1, max_length=500)
    goal: StrictStr | None = None
    activate: StrictBool = False


class PlanIdParams(Params):
    plan_id: StrictStr


class IdParams(Params):
    id: StrictStr


class TaskTreeParams(Params):
    #: Every task in full, as before the tree was lean (slow on a big board).
    full: StrictBool = False


class CommitParams(Params):
    #: A commit's id, full or abbreviated (hex only: never taken for an option or a ref name).
    commit: str = Field(pattern=r"^[0-9a-fA-F]{4,64}$")


class RetryTaskParams(Params):
    id: StrictStr
    #: The task's own budget, as a total (budgets, issue 15).
    budget_usd: float | None = Field(default=None, gt=0)
    budget_tokens: int | None = Field(default=None, gt=0)


class ListTasksParams(Params):
    plan_id: StrictStr | None = None
    status: TaskStatus | None = None


class HandoffsParams(Params):
    task_id: StrictStr | None = None


class MergeRequestsParams(Params):
    status: MergeStatus | None = None


class RejectMergeParams(Params):
    id: StrictStr
    reason: StrictStr = Field(min_length=1)


class ServeParams(Params):
    max_concurrent: StrictInt | None = Field(default=None, ge=1, le=64)


def describe_validation_error(method: str, error: ValidationError) -> str:
    """One readable line per problem, each naming the field (camelCase, as the client sent it)."""
    problems = []
    for item in error.errors():
        field = ".".join(to_camel(str(part)) for part in item["loc"]) or "params"
        problems.append(f"{field}: {item['msg']}")
    return f"invalid params for {method}: " + "; ".join(problems)
