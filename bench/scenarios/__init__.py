"""Scenarios: every module here is imported by the harness and registers its own.

Add a file (e.g. `points.py`) with `@scenario("points-balance", ceiling="raw-grpc-echo")`
functions; nothing else needs to change (`identity.py` is a complete example).
"""
