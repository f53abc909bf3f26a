"""What each `prt` command and each Prefect flow does, in plain Python: one module per job.

flows/ makes each job a Prefect flow (tracked in the UI, deployable); `prt` runs the flow when a
Prefect API is configured and the job itself otherwise, so a command never waits for a Prefect
server to start. Inside a flow run, a job's stages are Prefect task runs (tasks/stage.py).
"""
