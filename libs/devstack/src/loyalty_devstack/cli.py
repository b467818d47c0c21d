"""`loyalty-dev`: the developer's command line.

loyalty-dev run      infrastructure + every service, logs prefixed; Ctrl-C stops it all
loyalty-dev infra    only PostgreSQL and NATS (embedded unless the environment names them)
loyalty-dev demo     load the Huayue demo programme into a running suite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty_kit.settings import Settings

from loyalty_devstack import demo
from loyalty_devstack.embedded import DEV_NATS_PORT, Infrastructure

# Start order: the services the others call come first; the gateway last, stopped first.
SERVICES = ("identity", "points", "tiers", "benefits", "gateway")
COLOURS = {"identity": 36, "points": 33, "tiers": 35, "benefits": 32, "gateway": 34}


async def _pipe(name: str, stream: asyncio.StreamReader) -> None:
    colour = COLOURS.get(name, 0)
    prefix = f"\033[{colour}m{name:>8}\033[0m | " if sys.stdout.isatty() else f"{name:>8} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def wait_serving(target: str, timeout: float = 60.0) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{target} did not become SERVING in {timeout}s")
            await asyncio.sleep(0.2)


async def _terminate(processes: list[asyncio.subprocess.Process]) -> None:
    async def one(process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()

    await asyncio.gather(*(one(p) for p in processes))


async def run_suite(data_dir: Path) -> int:
    fresh = not (data_dir / "postgres").exists()
    infra = Infrastructure(
        data_dir, nats_port=int(os.environ.get("LOYALTY_DEV_NATS_PORT", DEV_NATS_PORT))
    )
    infra.start()
    env = {
        **os.environ,
        "LOYALTY_DATABASE_URL": infra.database_url,
        "LOYALTY_NATS_URL": infra.nats_url,
        "LOYALTY_DATA_DIR": str(data_dir),
        "LOYALTY_IDENTITY_DEV_KEYS": os.environ.get("LOYALTY_IDENTITY_DEV_KEYS", "true"),
        "LOYALTY_AUTH_DEV_KEYS": os.environ.get("LOYALTY_AUTH_DEV_KEYS", "true"),
        # Development: grpcurl with x-loyalty-* headers works without a token.
        "LOYALTY_AUTH_TRUST_HEADERS": os.environ.get("LOYALTY_AUTH_TRUST_HEADERS", "true"),
        "LOYALTY_LOG_FORMAT": os.environ.get("LOYALTY_LOG_FORMAT", "console"),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)  # the runner's own calls (the demo loader) see what the services see
    settings = Settings()
    processes: dict[str, asyncio.subprocess.Process] = {}
    pipes: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        for name in SERVICES:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"loyalty_{name}",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the runner, which stops them in order
            )
            processes[name] = process
            assert process.stdout is not None
            pipes.append(asyncio.create_task(_pipe(name, process.stdout)))
        port = {n: settings.port_of(n) for n in SERVICES if n != "gateway"}
        port["gateway"] = settings.gateway_grpc_port
        await asyncio.gather(*(wait_serving(f"127.0.0.1:{p}") for p in port.values()))
        if fresh:
            loaded = await demo.load(settings)
            print(f"demo programme: {loaded}", flush=True)
        client = await _demo_client(data_dir, env)
        print(
            "\nloyalty suite is up (Ctrl-C stops it)\n"
            f"  gateway   http://127.0.0.1:{settings.gateway_http_port}   "
            f"grpc 127.0.0.1:{settings.gateway_grpc_port}\n"
            + "".join(f"  {n:<9} grpc 127.0.0.1:{port[n]}\n" for n in SERVICES if n != "gateway")
            + "".join(f"  {k:<9} {v}\n" for k, v in infra.describe().items())
            + f"  API client (admin, for trying the HTTP API): {client}\n"
            f"    TOKEN=$(curl -s -u '{client}' -X POST "
            f"localhost:{settings.gateway_http_port}/v1/token | jq -r .access_token)\n"
            f'    curl -s -H "Authorization: Bearer $TOKEN" '
            f"localhost:{settings.gateway_http_port}/v1/ladder\n"
            f"  docs      http://127.0.0.1:{settings.gateway_http_port}/docs\n",
            flush=True,
        )
        exited = [asyncio.create_task(p.wait()) for p in processes.values()]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *exited], return_when=asyncio.FIRST_COMPLETED)
        if stopper not in done:
            crashed = [n for n, p in processes.items() if p.returncode is not None]
            print(f"service exited: {', '.join(crashed)}; stopping the suite", flush=True)
            code = 1
    except Exception as error:
        print(f"could not start the suite: {error}", flush=True)
        code = 1
    finally:
        # The gateway first (no new requests come in), then the services together.
        await _terminate([processes[n] for n in ("gateway",) if n in processes])
        await _terminate([p for n, p in processes.items() if n != "gateway"])
        for pipe in pipes:
            pipe.cancel()
        infra.stop()
        codes = ", ".join(f"{n} {p.returncode}" for n, p in processes.items())
        print(f"stopped (exit codes: {codes})", flush=True)
    return code


async def _demo_client(data_dir: Path, env: dict[str, str]) -> str:
    """`id:secret` of the development API client (admin), made once per data folder with the
    gateway's own CLI and kept beside the data (a development folder only)."""
    path = data_dir / "demo-api-client.json"
    if not path.exists():
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loyalty_gateway",
            "clients",
            "create",
            "--unit",
            "group",
            "--scopes",
            "admin",
            "--description",
            "make run demo client",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        if process.returncode != 0:
            return "(could not be made: see the gateway's log)"
        path.write_text(out.decode().strip().splitlines()[-1])
        path.chmod(0o600)
    made = json.loads(path.read_text())
    return f"{made['client_id']}:{made['client_secret']}"


async def run_infra(data_dir: Path) -> int:
    infra = Infrastructure(
        data_dir, nats_port=int(os.environ.get("LOYALTY_DEV_NATS_PORT", DEV_NATS_PORT))
    )
    infra.start()
    print(f"export LOYALTY_DATABASE_URL='{infra.database_url}'")
    print(f"export LOYALTY_NATS_URL='{infra.nats_url}'", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    infra.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loyalty-dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["run", "infra", "demo"])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("LOYALTY_DATA_DIR", ".loyalty"))
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return asyncio.run(run_suite(args.data_dir))
    if args.command == "infra":
        return asyncio.run(run_infra(args.data_dir))
    print(f"demo programme: {asyncio.run(demo.load(Settings()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
