"""Developer tools: the demo (`manage.py demo`), the benchmarks (`manage.py bench`) and the
launcher of the distributed mode's processes on one machine. Never imported by the product."""
