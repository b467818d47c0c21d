"""loyalty-admin: the operators' command line over gRPC (see cli.py)."""
