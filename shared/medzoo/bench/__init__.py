"""Benchmarks of the zoo's bundles on this CPU, one module per job; import what you need from its module.

- :mod:`~medzoo.bench.timing`: time per item, peak memory, iteration timing, the machine stamp of a report;
- :mod:`~medzoo.bench.measure`: the three measurements (bare network, end-to-end inference, one training epoch);
- :mod:`~medzoo.bench.runner`: a measurement in a fresh process (``python -m medzoo.bench.runner``);
- :mod:`~medzoo.bench.tuning`: the grid the bundles' inference defaults are chosen from;
- :mod:`~medzoo.bench.compare`: model files of one bundle as ratios to a reference (used by ``medzoo compress``);
- :mod:`~medzoo.bench.driver`: ``medzoo benchmark``, every measurement of a bundle in one run;
- :mod:`~medzoo.bench.report`: the Markdown report of a driver run.

Imports go one way, in that order; nothing here imports :mod:`medzoo.compress`.
"""
