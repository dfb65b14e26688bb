"""Benchmarks for ecrec: speed, quality, scaling, and a prepared GPU script.

Each entry point (``python -m benchmarks.<name>``) prints a rich table and
writes a JSON results file with the machine it ran on and its exact command
line, so recorded figures can be traced back to how they were produced. This
folder is not part of the installed distribution.
"""
