"""Scenarios: every module here is imported by the harness and registers its own.

Add a file (e.g. `identity.py`) with `@scenario("identity-resolve", ceiling="raw-grpc-echo")`
functions; nothing else needs to change.
"""
