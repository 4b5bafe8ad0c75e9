"""Rebuild the tables and figures of the BLAQ paper from recorded runs: see `python reproduce.py --help`."""

from benchmark.cli import main

if __name__ == "__main__":  # guarded: the grid's spawned workers import this file as __mp_main__
    raise SystemExit(main())
