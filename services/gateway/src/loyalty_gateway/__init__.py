"""The gateway: HTTP/JSON in front of the services and the composite flows of
`loyalty.gateway.v1`. `app.py` is what the kit runs, `bootstrap.py` wires it once per process;
`entrypoints/` (gRPC servicer, access rules, CLI) and `http/` take requests, `flows/` compose
the services' answers, `adapters/` hold the SQL and the calls to the services
(services/gateway/README.md has the whole map)."""
