"""Benchmarks (not tests): `python -m tests.bench --help`. Each figure is printed beside a ceiling measured
in the same run, three runs each, median and spread, with the CPU steal seen."""
