"""The loyalty platform's service kit: what every service needs, written once.

Services import from here, never from each other. Its modules, by what they are for:

Shared kernel (domain words every service uses the same way):
- `kernel.members`  members' resource names (`members/{id}`), member states, member tags
- `kernel.units`    business unit codes
- `kernel.money`    exact amounts with their currency
- `scopes`          the scopes a caller may hold, in one registry
- `clock`           `Clock` and `utc_now`: every service reads the time through one

Running a service:
- `server`       `ServiceSpec` (a service's bootstrap, servicers, consumers, jobs, commands),
                 start-up and graceful stop, the `loyalty-<name>` command line
- `servicers`    the read/write template of every servicer (`_read`, `_mutate`, `_settled`)
- `interceptors` the steps of every call: deadline, authentication, checks, error mapping, log
- `access`       one access rule per RPC method; `auth`, `caller` who is calling
- `errors`       domain errors (pure Python); `status` their google.rpc.Status, `definite(code)`
- `validation`, `pagination`, `timestamps`  bounds on requests, AIP-158 pages, Timestamps
- `settings`     the kit's LOYALTY_* settings; `logs`, `telemetry` logging and tracing
- `memory`       the allocator of long-running processes

Storage:
- `db`           async engine per service database, database creation, outage handling
- `uow`          the unit of work (session, outbox, idempotency keys) services extend
- `idempotency`  request_id handling of mutating RPCs
- `tables`       the kit's own tables; `migrations` shared Alembic (the kit's tables are
                 migrated once, from `kit_versions/`)
- `housekeeping` keeps the kit's tables small

Events and other services:
- `outbox`       transactional outbox and its relay to NATS JetStream; `events` the bus
- `inbox`        idempotent consumers, declared as a handler table (`Subscription`)
- `deadletters`, `events_cli`  parked events and the `loyalty-events` command
- `jobs`         scheduled work inside a service
- `channels`     client channels with deadlines and retries; `peers` clients of other services
- `deadlines`    the inbound deadline that outbound calls inherit
- `devfiles`     development secrets in the data folder

Kept for code not yet moved: `money` and `resources` re-export the kernel's names.
"""
