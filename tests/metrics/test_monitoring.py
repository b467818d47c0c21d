"""deploy/monitoring agrees with what the services export: every metric an alert or a dashboard
panel reads is one some service serves on its /metrics, the alerts the operators asked for are
there, and the kustomize component opens each service's metrics port where it listens."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.gateway.conftest import Gateway
from tests.points.conftest import Points
from tests.support.metrics import scrape

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
SERVICES = ("identity", "points", "tiers", "benefits", "gateway")
# Series names in PromQL: ours, and what Prometheus itself adds for each target.
METRIC = re.compile(r"\b(?:loyalty|grpc_server|process)_[a-z0-9_]+\b")
PROMETHEUS_OWN = {"up"}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    assert document["kind"] == "PrometheusRule"
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]


def test_the_alerts_operators_asked_for_are_there_and_complete() -> None:
    found = {rule["alert"]: rule for rule in rules()}
    for wanted in (
        "LoyaltyOutboxLag",
        "LoyaltyConsumerLag",
        "LoyaltyHighRpcErrorRate",
        "LoyaltyServiceNotServing",
        "LoyaltyDeadLetters",
    ):
        assert wanted in found, wanted
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"], name
        assert METRIC.search(rule["expr"]) or "up{" in rule["expr"], name


@pytest.mark.asyncio(loop_scope="session")
async def test_every_alert_and_panel_reads_metrics_the_services_export(
    gateway: Gateway,
    points: Points,
    identity_service: RunningService,
    tiers_service: RunningService,
    benefits_service: RunningService,
) -> None:
    member = await points.member()
    await points.earn(member, "hotel", "100.00")
    running = {
        "identity": identity_service,
        "points": points.service,
        "tiers": tiers_service,
        "benefits": benefits_service,
        "gateway": gateway.service,
    }
    exported: set[str] = set()
    for service in running.values():
        exported |= (await scrape(service)).exported()
    expressions = [rule["expr"] for rule in rules()] + dashboard_queries()
    assert len(expressions) > 30
    missing = {
        f"{name} (in {expression.strip()[:60]}...)"
        for expression in expressions
        for name in METRIC.findall(expression)
        if name not in exported | PROMETHEUS_OWN
    }
    assert not missing, "\n".join(sorted(missing))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders kustomize here")
def test_the_component_opens_each_services_metrics_port(tmp_path: Path) -> None:
    base = MONITORING.parent / "k8s" / "base"
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(base, tmp_path)],
                "components": [os.path.relpath(MONITORING, tmp_path)],
            }
        )
    )
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path), "--load-restrictor", "LoadRestrictionsNone"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in documents}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    dashboards = [d for d in documents if d["metadata"]["name"] == "loyalty-dashboard"]
    assert dashboards and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    defaults = Settings()
    for name in SERVICES:
        port = defaults.metrics_port_of(name)
        service = next(
            d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == name
        )
        assert {"name": "metrics", "port": port, "targetPort": "metrics"} in service["spec"][
            "ports"
        ]
        deployment = next(
            d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == name
        )
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "metrics", "containerPort": port} in container["ports"], name
    monitor = next(d for d in documents if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    labels = monitor["spec"]["selector"]["matchLabels"]
    for name in SERVICES:
        service = next(
            d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == name
        )
        assert labels.items() <= service["metadata"]["labels"].items(), name
