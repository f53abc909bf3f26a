"""The judge job (jobs/judge.py) as a Prefect flow."""

from prefect import flow

from jobs import judge

__all__ = ["judge_traces"]

judge_traces = flow(name="judge-traces", log_prints=True)(judge.judge_traces)
