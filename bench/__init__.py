"""jobsched's benchmarks: run them all with ``make bench`` (``python -m bench.run``).

Performance targets live here, never in timed unit tests. Each benchmark module
exposes ``run(argv) -> BenchmarkReport`` and ``main()``; ``bench.run`` lists them.
"""
