"""Experiments and benchmarks behind the figures in the docs, one script each (``python benchmarks/<name>.py --help``).

Not part of the installed ``medzoo`` package; the tests import them as ``benchmarks.<name>`` from the repository root.
"""
