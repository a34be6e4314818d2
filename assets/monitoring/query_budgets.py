"""Cost budgets per asset (`metadata/query_budgets.yml`), typed through resources/config_files."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

from pydantic import Field, StrictInt

from resources.config_files import StrictModel, read_yaml, unique_entries
from resources.settings import REPO_ROOT

BUDGETS_FILE = REPO_ROOT / "metadata" / "query_budgets.yml"


class QueryBudgetError(ValueError):
    """The budget file is missing, malformed or names an asset twice."""


class QueryBudget(StrictModel):
    """One asset's daily cost rules; `name` is its asset key (`lake/orders`)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")
    max_bytes_billed_per_day: Annotated[StrictInt, Field(ge=1)] | None = None
    median_multiple: float = Field(default=5.0, gt=1)
    trailing_days: Annotated[StrictInt, Field(ge=3, le=60)] = 14


DEFAULT_BUDGET = QueryBudget(name="default")


def load_budgets(path: Path | str = BUDGETS_FILE) -> dict[str, QueryBudget]:
    """Budgets by asset key; an asset named twice is an error naming both lines."""
    return {
        budget.name: budget
        for budget in unique_entries(
            read_yaml(path, QueryBudgetError), "budgets", QueryBudget, QueryBudgetError, "budget"
        )
    }


@functools.cache
def budgets() -> dict[str, QueryBudget]:
    return load_budgets()
