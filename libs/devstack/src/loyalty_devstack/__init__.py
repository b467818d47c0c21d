"""Development and test infrastructure: embedded PostgreSQL and NATS JetStream, the suite
runner behind `make run`, the demo programme loader and the pytest fixtures.

Never a dependency of a service image: production points the services at real servers.
"""
