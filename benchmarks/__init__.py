"""fastconv's kernel-level benchmark scripts; `python -m benchmarks [--quick]` runs the
side-by-side suite, which lives in the package (fastconv.bench: `fastconv bench` runs it from
anywhere)."""
from ._source_tree import prefer_installed_fastconv

prefer_installed_fastconv()
