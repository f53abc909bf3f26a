"""The long-running job (jobs/serve.py) as a Prefect flow: started once, runs until cancelled."""

from prefect import flow

from jobs import serve

__all__ = ["serve_inbox"]

serve_inbox = flow(name="serve-inbox", log_prints=True)(serve.serve_inbox)
