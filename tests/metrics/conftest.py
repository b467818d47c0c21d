from __future__ import annotations

from tests.gateway.conftest import catalogue, gateway, points, programme, tiers

__all__ = ["catalogue", "gateway", "points", "programme", "tiers"]
