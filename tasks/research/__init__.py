"""What researchers take out of the lake: the training export, the HTML report, one trace shown."""

from tasks.research.export import build_records, export
from tasks.research.report import write_report
from tasks.research.show import show_trace

__all__ = ["build_records", "export", "show_trace", "write_report"]
