"""The upkeep jobs (jobs/maintain.py) as Prefect flows: maintain_lake (nightly), forget_participant (on demand)."""

from prefect import flow

from jobs import maintain

__all__ = ["forget_participant", "maintain_lake"]

maintain_lake = flow(name="maintain-lake", log_prints=True)(maintain.maintain_lake)
forget_participant = flow(name="forget-participant", log_prints=True)(maintain.forget_participant)
