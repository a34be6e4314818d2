"""Change environments: a copy of production's parents, the changed dbt models built into it,
and a data diff against production (`minato env create|build|diff|drop`)."""
