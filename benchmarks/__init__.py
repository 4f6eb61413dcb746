"""fastconv benchmarks: `python -m benchmarks [--quick]` (see run.py)."""
from ._source_tree import prefer_installed_fastconv

prefer_installed_fastconv()
