"""The kustomize overlays as a cluster would get them: rendered with `kubectl kustomize`,
validated strictly (`make deploy-check`), and held to the code: each backend reachable only
from the services whose code calls it, an autoscaler, a disruption budget and a ServiceAccount
for every Deployment, backends behind headless Services that callers balance over, and
JetStream streams at three replicas with byte limits in production.

Skipped where kubectl (which carries kustomize) is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("identity", "points", "tiers", "benefits", "insights", "engagement", "gateway")
BACKENDS = ("identity", "points", "tiers", "benefits", "insights", "engagement")  # gateway calls
PORTS = {
    "identity": 50051,
    "points": 50052,
    "tiers": 50053,
    "benefits": 50054,
    "insights": 50055,
    "engagement": 50056,
}

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed"
)


def calls_in_code() -> dict[str, set[str]]:
    """Who calls whom, read from the code: the gateway reaches every backend (its Backends), and
    a service's peer clients are made as `peer(settings, "<caller>", "<callee>", Stub)`."""
    calls: dict[str, set[str]] = {"gateway": set(BACKENDS)}
    backends = (ROOT / "services/gateway/src/loyalty_gateway/adapters/backends.py").read_text()
    assert "for name in BACKENDS" in backends, "the gateway's channels are no longer per backend"
    pattern = re.compile(r'\bpeer\(\s*[\w.]+,\s*"(\w+)",\s*"(\w+)"')
    for service in SERVICES:
        for path in (ROOT / "services" / service / "src").rglob("*.py"):
            for caller, callee in pattern.findall(path.read_text()):
                assert caller == service, f"{path}: {service} calls as {caller}"
                calls.setdefault(caller, set()).add(callee)
    return calls


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    path = K8S / ("base" if overlay == "base" else f"overlays/{overlay}")
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered(overlay) if d["kind"] == kind}


def config(overlay: str) -> dict[str, str]:
    (found,) = (
        d["data"]
        for d in rendered(overlay)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("loyalty-config")
    )
    return dict(found)


def pod_names(selector: dict[str, Any]) -> set[str]:
    """The services whose server pods a NetworkPolicy peer's podSelector picks."""
    labels = selector["podSelector"]["matchLabels"]
    assert labels.get("app.kubernetes.io/component") == "server", selector
    return {labels["app.kubernetes.io/name"]}


def test_make_deploy_check_renders_and_validates_every_overlay_strictly() -> None:
    result = subprocess.run(
        [str(ROOT / "deploy" / "check.sh")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for overlay in ("base", *OVERLAYS):
        assert re.search(rf"{overlay}: \d+ objects, valid", result.stdout), result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_backend_is_reachable_only_from_its_callers_in_the_code(overlay: str) -> None:
    calls = calls_in_code()
    policies = of_kind(overlay, "NetworkPolicy")
    for backend in BACKENDS:
        callers = {c for c, callees in calls.items() if backend in callees}
        policy = policies[f"{backend}-ingress"]["spec"]
        (rule,) = policy["ingress"]
        allowed = set().union(*(pod_names(peer) for peer in rule["from"]))
        assert allowed == callers, f"{overlay}: {backend} reachable from {allowed}"
        assert [p["port"] for p in rule["ports"]] == [PORTS[backend]]
    # ... and every caller may call out to exactly what it calls.
    for caller, callees in calls.items():
        egress = policies[f"{caller}-egress"]["spec"]["egress"]
        reached = set().union(*(pod_names(peer) for rule in egress for peer in rule["to"]))
        assert reached == callees, f"{overlay}: {caller} may call {reached}"
    assert {n.removesuffix("-egress") for n in policies if n.endswith("-egress")} == set(calls)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_is_open_and_all_else_is_denied(overlay: str) -> None:
    policies = of_kind(overlay, "NetworkPolicy")
    deny = policies["loyalty-default-deny"]["spec"]
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "loyalty"}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    # Ingress rules without `from`: open to all. Only the gateway's.
    open_to_all = {
        name
        for name, policy in policies.items()
        for rule in policy["spec"].get("ingress") or []
        if "from" not in rule
    }
    assert open_to_all == {"gateway-ingress"}
    # Egress beyond the peers: DNS, PostgreSQL, NATS, nothing else.
    ports = {
        (p.get("protocol", "TCP"), p["port"])
        for name, policy in policies.items()
        if not name.endswith("-egress") or name.startswith("loyalty-")
        for rule in policy["spec"].get("egress") or []
        for p in rule["ports"]
    }
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 4222)}
    pods = [d for d in rendered(overlay) if d["kind"] in ("Deployment", "Job")]
    for pod in pods:
        labels = pod["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "loyalty", pod["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_scales_keeps_pods_through_disruptions_and_has_its_own_account(
    overlay: str,
) -> None:
    deployments = of_kind(overlay, "Deployment")
    assert set(deployments) == set(SERVICES)
    autoscalers = of_kind(overlay, "HorizontalPodAutoscaler")
    budgets = of_kind(overlay, "PodDisruptionBudget")
    accounts = of_kind(overlay, "ServiceAccount")
    for name, deployment in deployments.items():
        hpa = autoscalers[name]["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
        if overlay == "prod":
            assert hpa["minReplicas"] >= 3
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert budgets[name]["spec"]["maxUnavailable"] == 1
    for workload in (*deployments.values(), *of_kind(overlay, "Job").values()):
        spec = workload["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] in accounts
        assert (
            spec["serviceAccountName"] == workload["metadata"]["labels"]["app.kubernetes.io/name"]
        )
        assert spec["automountServiceAccountToken"] is False
    assert not [d for d in rendered(overlay) if d["kind"] in ("Role", "RoleBinding")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backends_are_headless_and_callers_balance_over_their_pods(overlay: str) -> None:
    services = of_kind(overlay, "Service")
    env = config(overlay)
    assert env["LOYALTY_GRPC_LOAD_BALANCING"] == "round_robin"
    assert float(env["LOYALTY_GRPC_MAX_CONNECTION_AGE_SECONDS"]) > 0
    for backend in BACKENDS:
        assert services[backend]["spec"]["clusterIP"] == "None", backend
        assert env[f"LOYALTY_{backend.upper()}_TARGET"] == f"dns:///{backend}:{PORTS[backend]}"
    # The gateway keeps a virtual IP: the Ingress controller routes to it.
    assert services["gateway"]["spec"].get("clusterIP") != "None"
    (ingress,) = of_kind(overlay, "Ingress").values()
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": "gateway", "port": {"name": "http"}}


def test_prod_streams_have_three_replicas_and_limits_dev_one() -> None:
    prod, dev = config("prod"), config("dev")
    assert prod["LOYALTY_EVENT_STREAM_REPLICAS"] == "3"
    nats = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())["config"]
    assert nats["cluster"]["replicas"] == 3
    for key in ("LOYALTY_EVENT_STREAM_MAX_BYTES", "LOYALTY_DEAD_LETTER_MAX_BYTES"):
        assert int(prod[key]) > 0 and int(dev[key]) > 0, key
    # The file store of each node holds every stream's limit (5 services, dead letters).
    store = int(nats["jetstream"]["fileStore"]["pvc"]["size"].removesuffix("Gi")) * 2**30
    assert (
        5 * int(prod["LOYALTY_EVENT_STREAM_MAX_BYTES"]) + int(prod["LOYALTY_DEAD_LETTER_MAX_BYTES"])
        < store
    )
    assert dev["LOYALTY_EVENT_STREAM_REPLICAS"] == "1"
    (ingress,) = of_kind("prod", "Ingress").values()
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
