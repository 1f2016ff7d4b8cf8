"""Runnable sweep definitions: ``python -m sweeps.rings``, ``python -m sweeps.linear``, ..."""
