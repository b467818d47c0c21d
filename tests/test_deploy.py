"""The deployment files (deploy/) agree with the code: ports, probes, shutdown grace, commands,
migrations, authentication and every LOYALTY_* key are checked against
loyalty_kit.settings.Settings, the other settings classes (loyalty_kit.auth.AuthSettings, the
gateway's and the identity service's own), the services' specs and their pyproject.toml, so
changing one without the other fails here.

No Kubernetes cluster or Docker engine is involved: the manifests are read as data (PyYAML).
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from loyalty_gateway.settings import GatewaySettings
from loyalty_identity.settings import IdentityKeys
from loyalty_kit.auth import AuthSettings
from loyalty_kit.server import ServiceSpec
from loyalty_kit.settings import Settings
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

PREFIX = "LOYALTY_"
# Each service and the Settings field holding its gRPC port.
GRPC_PORT_FIELD = {
    "identity": "identity_port",
    "points": "points_port",
    "tiers": "tiers_port",
    "benefits": "benefits_port",
    "insights": "insights_port",
    "engagement": "engagement_port",
    "gateway": "gateway_grpc_port",
}
SERVICES = tuple(GRPC_PORT_FIELD)
BACKENDS = ("identity", "points", "tiers", "benefits", "insights", "engagement")  # gateway calls
# Every settings class that reads LOYALTY_* variables: the kit's (every service), the kit's auth
# (every service), and services' own. A key is known when it is a field of one of them.
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    Settings,
    AuthSettings,
    GatewaySettings,
    IdentityKeys,
)


def spec_of(service: str) -> ServiceSpec:
    spec = importlib.import_module(f"loyalty_{service}.app").SPEC
    assert isinstance(spec, ServiceSpec)
    return spec


# The services with a database of their own: those whose spec has migrations.
DATABASE_SERVICES = tuple(s for s in SERVICES if spec_of(s).migrations)

# The services that call others on their own account (loyalty_kit.auth.ServiceCredentials), and
# the Secret holding each one's signing key (key `service-key`). No other service has one.
SERVICE_KEY_SECRETS = {
    "identity": "loyalty-identity-service-key",
    "benefits": "loyalty-benefits-service-key",
    "points": "loyalty-points-service-key",
    "engagement": "loyalty-engagement-service-key",
}
SERVICE_KEY_SECRET_KEY = "service-key"


def services_signing_their_calls() -> set[str]:
    """The services whose code makes ServiceCredentials (each under its own name), directly or
    through the kit's peer-client factory (`peer(settings, "<caller>", ...)`)."""
    pattern = re.compile(
        r'(?:ServiceCredentials\.from_settings|\bpeer)\(\s*(?:[\w.]+,\s*)?"([^"]+)"'
    )
    found: set[str] = set()
    for service in SERVICES:
        for path in sorted((ROOT / "services" / service / "src").rglob("*.py")):
            for name in pattern.findall(path.read_text()):
                assert name == service, f"{path}: {service} signs its calls as {name!r}"
                found.add(service)
    return found


def env_key(settings: type[BaseSettings], field: str) -> str:
    return str(settings.model_config.get("env_prefix", "")) + field.upper()


def field_of(key: str) -> tuple[type[BaseSettings], str] | None:
    """The settings class and field an environment variable sets, if any."""
    for settings in SETTINGS_CLASSES:
        for field in settings.model_fields:
            if env_key(settings, field) == key:
                return settings, field
    return None


def default(field: str, settings: type[BaseSettings] = Settings) -> Any:
    """A settings default as declared (not as the test process's environment overrides it)."""
    return settings.model_fields[field].default


def validated(field: str, value: str, settings: type[BaseSettings] = Settings) -> Any:
    """`value` as the settings class reads it from the environment (raises when refused)."""
    return getattr(settings.model_validate({field: value}), field)


def ports_of(service: str) -> set[int]:
    ports = {int(default(GRPC_PORT_FIELD[service]))}
    if service == "gateway":
        ports.add(int(default("gateway_http_port")))
    return ports


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# --- the manifests ------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    """The base and the NATS values; the overlays are checked rendered
    (tests/test_deploy_render.py), since their patches are not whole objects."""
    return sorted(
        p
        for p in K8S.rglob("*")
        if p.suffix in (".yaml", ".yml") and "overlays" not in p.relative_to(K8S).parts
    )


def documents() -> Iterator[tuple[Path, Any]]:
    for path in yaml_files():
        for doc in load_yaml(path):
            yield path, doc


def resources() -> list[dict[str, Any]]:
    return [
        doc
        for _, doc in documents()
        if isinstance(doc, dict)
        and "apiVersion" in doc
        and doc.get("kind") not in (None, "Kustomization")
    ]


def kustomization() -> dict[str, Any]:
    (doc,) = load_yaml(BASE / "kustomization.yaml")
    assert isinstance(doc, dict)
    return doc


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r} under deploy/k8s, found {len(matches)}"
    return matches[0]


def shared_config() -> dict[str, str]:
    """The loyalty-config ConfigMap: kustomize generator literals and any plain ConfigMap."""
    config: dict[str, str] = {}
    for generator in kustomization().get("configMapGenerator") or []:
        if generator["name"] == "loyalty-config":
            for literal in generator.get("literals") or []:
                key, _, value = str(literal).partition("=")
                config[key] = value
    for resource in resources():
        if resource["kind"] == "ConfigMap" and resource["metadata"]["name"] == "loyalty-config":
            config.update({k: str(v) for k, v in (resource.get("data") or {}).items()})
    return config


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def main_container(workload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(workload)["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    (container,) = (c for c in containers if c["name"] == name)
    return container


def literal_env(container: dict[str, Any]) -> dict[str, str]:
    """What the container's environment holds: the shared ConfigMap, then its own `env` values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref is not None and ref["name"] == "loyalty-config":
            env.update(shared_config())
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def env_names(container: dict[str, Any]) -> set[str]:
    names = {item["name"] for item in container.get("env") or []}
    if any(
        (s.get("configMapRef") or {}).get("name") == "loyalty-config"
        for s in container.get("envFrom") or []
    ):
        names |= set(shared_config())
    return names


def effective(
    container: dict[str, Any], field: str, settings: type[BaseSettings] = Settings
) -> Any:
    """A settings field as this container would see it (validated by the settings class)."""
    env = literal_env(container)
    key = env_key(settings, field)
    if key not in env:
        return default(field, settings)
    return validated(field, env[key], settings)


def env_source(container: dict[str, Any], name: str) -> tuple[str, str, str] | None:
    """Where the container's variable `name` comes from: ("secretKeyRef" or "configMapKeyRef",
    object name, key), or None when it is not read from one."""
    for item in container.get("env") or []:
        if item["name"] == name:
            for kind, ref in (item.get("valueFrom") or {}).items():
                if kind in ("secretKeyRef", "configMapKeyRef"):
                    return kind, ref["name"], ref["key"]
    return None


def secrets_of(workload: dict[str, Any]) -> set[str]:
    """Every Secret a workload's pod references: env values, envFrom, volumes (projected too)."""
    names: set[str] = set()
    spec = pod_spec(workload)
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if ref is not None:
                names.add(ref["name"])
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def workloads_referencing(secret: str) -> set[tuple[str, str]]:
    """(kind, name) of every workload whose pod references Secret `secret`."""
    return {
        (workload["kind"], workload["metadata"]["name"])
        for workload in workloads()
        if secret in secrets_of(workload)
    }


def env_item(container: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((i for i in container.get("env") or [] if i["name"] == name), None)


def workloads() -> list[dict[str, Any]]:
    return [r for r in resources() if r["kind"] in ("Deployment", "Job", "StatefulSet")]


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = (p["containerPort"] for p in container["ports"] if p.get("name") == port)
    return int(number)


# --- Kubernetes ---------------------------------------------------------------------------------


def test_every_manifest_parses_and_the_kustomization_lists_them() -> None:
    assert yaml_files(), "no YAML under deploy/k8s"
    for path, doc in documents():
        assert isinstance(doc, dict), f"{path}: a document that is not a mapping"
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "deploy/k8s/base/kustomization.yaml resources != files in base/"
    assert kustomization()["namespace"] == "loyalty"
    assert find("Namespace", "loyalty")


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_listens_and_is_probed_on_the_settings_ports(service: str) -> None:
    deployment = find("Deployment", service)
    container = main_container(deployment, service)
    # The autoscaler owns the count (an apply must not reset it), and keeps two at least.
    assert "replicas" not in deployment["spec"]
    assert find("HorizontalPodAutoscaler", service)["spec"]["minReplicas"] >= 2
    assert container["command"] == [f"loyalty-{service}"]
    assert container.get("args", ["serve"]) == ["serve"]
    assert {int(p["containerPort"]) for p in container["ports"]} == ports_of(service)

    grpc_port = int(default(GRPC_PORT_FIELD[service]))
    # Liveness: the gRPC health service, or (to not restart pods during a database outage, see
    # deploy/README.md) a plain TCP check, on the gRPC port either way.
    liveness = container["livenessProbe"]
    (handler,) = (liveness[k] for k in ("grpc", "tcpSocket") if k in liveness)
    assert port_number(container, handler["port"]) == grpc_port
    readiness = container["readinessProbe"]
    if service == "gateway":
        http = readiness["httpGet"]
        assert http["path"] == "/healthz"
        assert port_number(container, http["port"]) == int(default("gateway_http_port"))
    else:
        assert port_number(container, readiness["grpc"]["port"]) == grpc_port

    # The service has to listen on the pod's address, not loopback, for probes and peers.
    assert effective(container, "host") == "0.0.0.0"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind


@pytest.mark.parametrize("service", SERVICES)
def test_pods_get_time_to_stop_gracefully(service: str) -> None:
    """SIGTERM comes after preStop; then the kit waits up to shutdown_grace_seconds for calls in
    flight and as long again for background jobs (loyalty_kit.server.RunningService.stop)."""
    deployment = find("Deployment", service)
    container = main_container(deployment, service)
    grace = float(effective(container, "shutdown_grace_seconds"))
    pre_stop = 0.0
    command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get(
        "command"
    )
    if command and command[0] == "sleep":
        pre_stop = float(command[1])
    period = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert period > float(default("shutdown_grace_seconds"))
    assert period > pre_stop + 2 * grace, (
        f"{service}: terminationGracePeriodSeconds {period} <= preStop {pre_stop}s + 2 x "
        f"LOYALTY_SHUTDOWN_GRACE_SECONDS {grace}"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_service_routes_to_the_serving_pods_only(service: str) -> None:
    svc = find("Service", service)
    deployment = find("Deployment", service)
    assert {int(p["port"]) for p in svc["spec"]["ports"]} == ports_of(service)
    container = main_container(deployment, service)
    for port in svc["spec"]["ports"]:
        assert port_number(container, port.get("targetPort", port["port"])) == int(port["port"])
    selector = svc["spec"]["selector"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for job in (r for r in resources() if r["kind"] == "Job"):
        job_labels = job["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= job_labels.items(), (
            f"Service {service} would send traffic to Job {job['metadata']['name']}"
        )


def test_the_gateway_is_a_database_service() -> None:
    """The gateway keeps its API clients in its own database (loyalty_gateway.adapters.clients)."""
    assert "gateway" in DATABASE_SERVICES
    assert set(DATABASE_SERVICES) >= set(BACKENDS)


@pytest.mark.parametrize("service", DATABASE_SERVICES)
def test_database_services_migrate_in_a_job_not_on_start(service: str) -> None:
    job = find("Job", f"{service}-migrate")
    container = main_container(job)
    command = [*container.get("command", []), *container.get("args", [])]
    assert command[0] == f"loyalty-{service}"
    assert "migrate" in command
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")

    deployment = find("Deployment", service)
    serving = main_container(deployment, service)
    assert container["image"] == serving["image"]
    assert effective(serving, "migrate_on_start") is False
    assert effective(container, "database_create") is True
    sources = {env_source(each, "LOYALTY_DATABASE_URL") for each in (serving, container)}
    assert sources == {("secretKeyRef", f"{service}-database", "url")}, (
        f"{service}: LOYALTY_DATABASE_URL must come from Secret {service}-database (key url), "
        "the same in the Deployment and its migration Job"
    )


def test_only_database_services_have_migrations_and_database_urls() -> None:
    jobs = {r["metadata"]["name"] for r in resources() if r["kind"] == "Job"}
    assert jobs == {f"{s}-migrate" for s in DATABASE_SERVICES}
    for service in set(SERVICES) - set(DATABASE_SERVICES):
        container = main_container(find("Deployment", service), service)
        assert "LOYALTY_DATABASE_URL" not in env_names(container), service


def test_every_loyalty_key_is_a_settings_field_with_a_valid_value() -> None:
    keys: dict[str, str | None] = dict(shared_config())
    for workload in workloads():
        for container in pod_spec(workload)["containers"]:
            for item in container.get("env") or []:
                keys.setdefault(item["name"], item.get("value"))
    loyalty = {k: v for k, v in keys.items() if k.startswith(PREFIX)}
    assert loyalty
    unknown = sorted(k for k in loyalty if field_of(k) is None)
    classes = ", ".join(c.__name__ for c in SETTINGS_CLASSES)
    assert not unknown, f"not fields of any settings class ({classes}): {unknown}"
    # ... and every literal value is one its settings class accepts (types, ranges, enums).
    for key, value in loyalty.items():
        found = field_of(key)
        if value is not None and found is not None:
            settings, field = found
            validated(field, value, settings)


def test_streams_are_replicated_on_every_node_of_the_nats_cluster() -> None:
    """R3 on the 3-node cluster: one node lost loses nothing published (what
    tests/reliability/cluster/test_nats_cluster.py proves on loopback)."""
    config = shared_config()
    nats = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())["config"]
    assert nats["cluster"]["enabled"] and nats["jetstream"]["enabled"]
    replicas = int(config["LOYALTY_EVENT_STREAM_REPLICAS"])
    assert replicas == nats["cluster"]["replicas"] == 3


def test_the_gateway_finds_every_backend_by_its_service_name() -> None:
    gateway = main_container(find("Deployment", "gateway"), "gateway")
    env = literal_env(gateway)
    for backend in BACKENDS:
        target = env.get(f"{PREFIX}{backend.upper()}_TARGET")
        assert target, f"no {PREFIX}{backend.upper()}_TARGET for the gateway"
        host, _, port = target.removeprefix("dns:///").rpartition(":")
        assert host.split(".")[0] == backend
        assert int(port) == int(default(GRPC_PORT_FIELD[backend]))
        assert int(port) in {int(p["port"]) for p in find("Service", backend)["spec"]["ports"]}


# --- authentication ----------------------------------------------------------------------------


def test_caller_headers_are_not_trusted_and_there_are_no_dev_keys() -> None:
    """Without a bearer token a call is refused (UNAUTHENTICATED, TOKEN_MISSING): trusted
    x-loyalty-* headers would let anyone who reaches a service claim any unit and scope
    (loyalty_kit.auth)."""
    config = shared_config()
    key = env_key(AuthSettings, "trust_headers")
    assert key in config, f"{key} must be set in the shared config (its default is true)"
    assert validated("trust_headers", config[key], AuthSettings) is False
    for workload in workloads():
        for container in pod_spec(workload)["containers"]:
            where = f"{workload['kind']} {workload['metadata']['name']}"
            assert effective(container, "trust_headers", AuthSettings) is False, where
            assert effective(container, "dev_keys", AuthSettings) is False, where
            # ... and no container reads them from somewhere this test cannot see.
            for field in ("trust_headers", "dev_keys"):
                assert env_source(container, env_key(AuthSettings, field)) is None, where


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_verifies_tokens_with_the_published_public_keys(service: str) -> None:
    container = main_container(find("Deployment", service), service)
    source = env_source(container, env_key(AuthSettings, "public_keys"))
    assert source is not None, f"{service}: LOYALTY_AUTH_PUBLIC_KEYS from a ConfigMap or Secret"
    # One list for all: a token the gateway signs must verify everywhere.
    gateway = main_container(find("Deployment", "gateway"), "gateway")
    assert source == env_source(gateway, env_key(AuthSettings, "public_keys"))


def test_the_gateway_signs_tokens_with_a_key_from_a_secret() -> None:
    key = env_key(GatewaySettings, "signing_key")
    gateway = main_container(find("Deployment", "gateway"), "gateway")
    source = env_source(gateway, key)
    assert source is not None and source[0] == "secretKeyRef", f"{key} must come from a Secret"
    assert key not in shared_config(), f"{key} must not be in the shared ConfigMap"
    # No other workload holds the private key, under its own name or another.
    for workload in workloads():
        if workload["kind"] == "Deployment" and workload["metadata"]["name"] == "gateway":
            continue
        for container in pod_spec(workload)["containers"]:
            where = f"{workload['kind']} {workload['metadata']['name']}"
            assert key not in env_names(container), where
            refs = {env_source(container, item["name"]) for item in container.get("env") or []}
            assert ("secretKeyRef", source[1], source[2]) not in refs, where


def test_exactly_the_services_that_sign_their_calls_have_a_service_key() -> None:
    """The code and the manifests agree on who calls other services on its own account: a
    service making ServiceCredentials without a key would send x-loyalty-* headers, which
    services trusting no headers refuse."""
    assert services_signing_their_calls() == set(SERVICE_KEY_SECRETS)
    assert "gateway" not in SERVICE_KEY_SECRETS  # it forwards its API clients' tokens
    assert len(set(SERVICE_KEY_SECRETS.values())) == len(SERVICE_KEY_SECRETS)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_calling_others_reads_its_own_key_from_its_own_secret(service: str) -> None:
    key = env_key(AuthSettings, "service_key")
    assert key not in shared_config(), f"{key} must not be in the shared ConfigMap"
    container = main_container(find("Deployment", service), service)
    secret = SERVICE_KEY_SECRETS.get(service)
    if secret is None:
        assert key not in env_names(container), f"{service} calls no service on its own account"
        return
    assert env_source(container, key) == ("secretKeyRef", secret, SERVICE_KEY_SECRET_KEY), (
        f"{service}: {key} must come from Secret {secret} (key {SERVICE_KEY_SECRET_KEY})"
    )
    # Required: a pod whose Secret is missing does not start (rather than send headers).
    item = env_item(container, key)
    assert item is not None
    assert item["valueFrom"]["secretKeyRef"].get("optional", False) is False, service


def test_every_signing_key_secret_is_referenced_by_exactly_one_deployment() -> None:
    """A private key only in the pod that signs with it: the gateway's in the gateway, each
    service's in that service (not its migration Job, not another service, under no name)."""
    gateway = main_container(find("Deployment", "gateway"), "gateway")
    signing = env_source(gateway, env_key(GatewaySettings, "signing_key"))
    assert signing is not None
    owners = {signing[1]: "gateway", **{s: svc for svc, s in SERVICE_KEY_SECRETS.items()}}
    assert len(owners) == 1 + len(SERVICE_KEY_SECRETS), "a key Secret shared by two signers"
    for secret, owner in owners.items():
        assert workloads_referencing(secret) == {("Deployment", owner)}, (
            f"Secret {secret} must be referenced by Deployment {owner} alone"
        )
    # ... and no pod has a service key but a Deployment reading its own Secret.
    key = env_key(AuthSettings, "service_key")
    for workload in workloads():
        kind, name = workload["kind"], workload["metadata"]["name"]
        for container in pod_spec(workload)["containers"]:
            if key in env_names(container):
                own = SERVICE_KEY_SECRETS.get(name) if kind == "Deployment" else None
                assert own is not None, f"{kind} {name} has {key}"
                expected = ("secretKeyRef", own, SERVICE_KEY_SECRET_KEY)
                assert env_source(container, key) == expected, f"{kind} {name}"


# --- Docker ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instruction, _, rest = stripped.partition(" ")
            result.append((instruction.upper(), rest.strip()))
    return result


def test_dockerfile_builds_and_exposes_every_service() -> None:
    instructions = dockerfile_instructions()
    stages: dict[str, list[str]] = {}
    current = ""
    for instruction, rest in instructions:
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, rest
            current = match.group(2) or ""
            stages[current] = []
        elif instruction == "EXPOSE":
            stages[current].extend(rest.split())
    exposed = {
        name.removeprefix("runtime-"): {int(p.split("/")[0]) for p in ports}
        for name, ports in stages.items()
        if name.startswith("runtime-")
    }
    assert exposed == {service: ports_of(service) for service in SERVICES}
    froms = [rest for instruction, rest in instructions if instruction == "FROM"]
    assert froms[-1] == "runtime-${SERVICE}", "the last stage must pick runtime-${SERVICE}"

    text = " ".join(rest for _, rest in instructions)
    (allowed,) = re.findall(r"case \"\$\{SERVICE\}\" in\s+([\w|]+)\)", text)
    assert set(allowed.split("|")) == set(SERVICES)
    assert '--package "loyalty-${SERVICE}"' in text
    assert "--no-dev" in text and "--frozen" in text
    entrypoint = json.loads(next(r for i, r in instructions if i == "ENTRYPOINT"))
    assert any("loyalty-${SERVICE}" in part for part in entrypoint)
    assert json.loads(next(r for i, r in instructions if i == "CMD")) == ["serve"]
    users = [r for i, r in instructions if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_dockerfile_pins_the_uv_of_the_makefile() -> None:
    (makefile_uv,) = re.findall(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    pinned = [
        rest.partition("=")[2]
        for instruction, rest in dockerfile_instructions()
        if instruction == "ARG" and rest.startswith("UV_VERSION=")
    ]
    assert pinned == [makefile_uv]


@pytest.mark.parametrize("service", SERVICES)
def test_the_commands_exist(service: str) -> None:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    assert project["project"]["name"] == f"loyalty-{service}"
    assert f"loyalty-{service}" in project["project"]["scripts"]


# --- the YAML reader itself ---------------------------------------------------------------------


def test_the_identity_service_gets_its_keys_from_a_secret() -> None:
    container = main_container(find("Deployment", "identity"))
    from_secrets = {
        item["name"]
        for item in container.get("env") or []
        if "secretKeyRef" in (item.get("valueFrom") or {})
    }
    assert {"LOYALTY_IDENTITY_KEYS", "LOYALTY_IDENTITY_BLIND_INDEX_KEY"} <= from_secrets
