"""Suites, one file or folder each (installed as ``craft_bench.suites``). Registered in ``craft_bench.registry``."""
