"""Run-queue lanes: the tag the queued run coordinator limits by (dagster.yaml,
deploy/dagster.prod.yaml), so that backfills and ad-hoc runs cannot starve the daily core runs.

`core`: runs started by schedules and sensors. `backfill`: history loads and on-call re-runs.
`adhoc`: everything launched by hand (the default tag of every named job).
"""

LANE_TAG = "minato/lane"
CORE_LANE = "core"
BACKFILL_LANE = "backfill"
ADHOC_LANE = "adhoc"
LANES = (CORE_LANE, BACKFILL_LANE, ADHOC_LANE)


def lane_tags(lane: str) -> dict[str, str]:
    if lane not in LANES:
        raise ValueError(f"unknown run lane {lane!r}: one of {', '.join(LANES)}")
    return {LANE_TAG: lane}
