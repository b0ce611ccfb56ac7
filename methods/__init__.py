"""Methods, one file each (installed as ``craft_bench.methods``). Registered in ``craft_bench.registry``."""
