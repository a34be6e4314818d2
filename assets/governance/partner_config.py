"""`metadata/partners/<id>/config.yml`: a partner company's mart and how it is shared.

The mart part (company_id, name, filter_column) drives `minato generate partner`; the optional
`sharing` section drives `minato share`: an Analytics Hub data exchange and a listing for the
partner, the principals who may subscribe, the data-review ticket that approved the share, and
the privacy rules the shared views carry:

    sharing:
      exchange: minato_partners
      listing: kazaneya
      subscribers: [group:analysts@kazaneya.example.com]
      review_ticket: DATA-123
      privacy:
        privacy_unit: customer_key   # k distinct customers behind every output row
        threshold: 5
        join_allowed_columns: []
      views:
        - name: orders_by_prefecture
          model: orders_v2
          dimensions: [shipping_prefecture]
          measures:
            - {name: orders, function: count}
            - {name: gmv_jpy, function: sum, column: total_amount_jpy}

A sharing section without a privacy unit or a review ticket is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from resources.config_files import StrictModel, YamlFile, identifier, read_yaml, validate_entry

Name = Annotated[str, identifier("name")]
Member = Annotated[str, Field(pattern=r"^(user|group|serviceAccount|domain):[^\s,;'\"]+$")]


class PartnerConfigError(ValueError):
    """A partner's config.yml that cannot be generated or shared from."""


class Privacy(StrictModel):
    """Set on every shared view (BigQuery `privacy_policy`; DuckDB: HAVING in the view)."""

    privacy_unit: Annotated[str, identifier("privacy unit column")] = Field(
        description="The entity protected: every output row aggregates >= threshold of them."
    )
    threshold: Annotated[int, Field(strict=True, ge=2)] = Field(
        description="k: the fewest distinct privacy units an output row may aggregate."
    )
    join_allowed_columns: list[Name] = Field(
        default_factory=list,
        description="The only columns a subscriber may join on; empty: no joins at all.",
    )


class Measure(StrictModel):
    name: Name
    function: Literal["count", "sum", "avg", "min", "max"]
    column: Name | None = None

    @model_validator(mode="after")
    def _column_given(self) -> Measure:
        if self.column is None and self.function != "count":
            raise ValueError(f"key 'column': {self.function} needs a column")
        return self

    def sql(self) -> str:
        argument = self.column or "*"
        return f"{self.function}({argument}) as {self.name}"


class SharedView(StrictModel):
    """One thresholded view: what a subscriber's aggregate query over a mart model returns."""

    name: Name
    model: Annotated[str, Field(pattern=r"^[a-z0-9_]+_v[1-9][0-9]*$")] = Field(
        description="The mart model without its public_<id>_<name>_ prefix, e.g. orders_v2."
    )
    dimensions: list[Name] = Field(default_factory=list)
    measures: list[Measure] = Field(min_length=1)


class Sharing(StrictModel):
    exchange: Name
    listing: Name
    subscribers: list[Member] = Field(min_length=1)
    review_ticket: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]*-[0-9]+$")] = Field(
        description="The data-review ticket that approved this share, e.g. DATA-123."
    )
    privacy: Privacy
    views: list[SharedView] = Field(min_length=1)


class PartnerConfig(StrictModel):
    company_id: Annotated[int, Field(strict=True, gt=0)]
    name: Annotated[str, identifier("company name")] = Field(
        description="Company name in the dataset name: public_<id>_<name>."
    )
    description: str = ""
    filter_column: Annotated[str, identifier("filter column")] = Field(
        description="Column of every requested model holding the company's id."
    )
    sharing: Sharing | None = None

    @property
    def dataset(self) -> str:
        return f"public_{self.company_id}_{self.name}"

    @property
    def share_dataset(self) -> str:
        """The dataset the listing publishes: only the thresholded views, never the tables."""
        return f"{self.dataset}_share"

    def shared_models(self) -> list[str]:
        """The mart models the views read (public_<id>_<name>_<table>_<version>)."""
        views = self.sharing.views if self.sharing else []
        return sorted({f"{self.dataset}_{view.model}" for view in views})


def sharing_partners(metadata: Path, companies: tuple[str, ...] = ()) -> list[PartnerConfig]:
    """The configs with a sharing section: of `companies`, or of every partner folder. A named
    company without one is an error."""
    chosen = companies or sorted(
        p.parent.name for p in (metadata / "partners").glob("*/config.yml")
    )
    configs = []
    for company in chosen:
        config = load_partner_config(metadata, company)[0]
        if config.sharing is not None:
            configs.append(config)
        elif companies:
            raise PartnerConfigError(f"partner {company} has no sharing section")
    return configs


def load_partner_config(metadata: Path, company: str) -> tuple[PartnerConfig, YamlFile]:
    """The company's config; errors name file, line and key."""
    shown = f"metadata/partners/{company}/config.yml"
    path = metadata / "partners" / company / "config.yml"
    document = read_yaml(path, PartnerConfigError, shown_as=shown)
    config = validate_entry(document, PartnerConfig, document.data, (), None, PartnerConfigError)
    if str(config.company_id) != company:
        raise PartnerConfigError(
            document.problem(
                ("company_id",),
                f"must be the folder's number {company!r}, not {config.company_id!r}",
                key="company_id",
            )
        )
    return config, document
