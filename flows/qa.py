"""The verification job (jobs/qa.py) as a Prefect flow: sandboxes run in its thread pool."""

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from jobs import qa

__all__ = ["verify_traces"]

verify_traces = flow(name="verify-traces", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)(qa.verify_traces)
