"""The loyalty platform's service kit: what every service needs, written once.

Layers inside a service import from here, never from each other's services:
- `errors`       domain errors (pure Python) that one interceptor maps to google.rpc.Status
- `settings`     configuration from LOYALTY_* environment variables
- `db`           async SQLAlchemy engine per service database, database creation
- `migrations`   Alembic, shared env.py logic and the kit's own tables (outbox, inbox, idempotency)
- `server`       grpc.aio bootstrap: health, reflection, interceptors, graceful SIGTERM
- `channels`     client channels with deadlines and a retry policy for UNAVAILABLE
- `outbox`       transactional outbox + relay to NATS JetStream
- `inbox`        idempotent JetStream consumers
- `idempotency`  request_id handling for mutating RPCs
- `telemetry`    OpenTelemetry set-up; `logs` structured JSON logging without personal data
"""
