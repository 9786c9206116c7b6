"""asv benchmarks of ensemblepp (run with ``asv run --python=same --quick``)."""
