"""The producer side: everything a client needs to record and send sessions, installable alone
(`pip install 'pr-telemetry[client]'`: pydantic, fsspec, typer, rich; s3fs for S3).

    writer      TraceWriter, the SDK: events, chunks, artifacts, the hash chain, complete.json
    recorder    `prt record` / `prt run` / `prt note`: a session recorded from the terminal
    upload      `prt upload DIR`; grant: presigned uploads without credentials (`prt grant`)
    snapshot    the repo snapshot (a deterministic gzip tar)
    storage     object-store access (any fsspec URL) and the one mapping of its errors
    diffs       unified diffs: made by the SDK, replayed strictly by QA and the export
    testruns/   how tests are run and reported: runner commands, in-process reporters, report parsing
    cli         the `prt` command (the pipeline's commands import it only when they run)

The pipeline (tasks/, lake/) imports storage, diffs and testruns; nothing here imports the pipeline.
"""
