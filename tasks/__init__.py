"""The pipeline's stages, one package each; flows/ wires them into Prefect flows.

    ingest/     inbox -> claimed batches -> assembled, validated, redacted rows -> Delta appends,
                raw archive, clean inbox
    qa/         replay the edits, run the tests before and after in a sandbox, grade -> qa_runs
    judge/      score each trace's debugging process on the rubric -> scores
    upkeep/     retention, compaction, erasure (maintain) and reprocessing from the lake's copies
    research/   what researchers take out: the training export, the HTML report, one trace shown

stage.py holds the Prefect task settings every stage shares; publish.py the run artifacts.
"""
