"""loyalty-check: a read-only consistency checker across the loyalty services (see cli.py)."""
