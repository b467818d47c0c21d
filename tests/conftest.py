"""Every test runs against real PostgreSQL and NATS JetStream: embedded servers by default,
the ones named by LOYALTY_DATABASE_URL / LOYALTY_NATS_URL when set (see loyalty_devstack.testing).
"""

pytest_plugins = ["loyalty_devstack.testing"]
