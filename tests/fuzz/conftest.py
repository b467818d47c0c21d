# Every service of the suite, the gateway included, with the Huayue programme, ladder and
# catalogue in force, so generated requests reach past the first checks.
from tests.benefits.conftest import catalogue, ladder
from tests.gateway.conftest import gateway_service
from tests.points.conftest import programme

__all__ = ["catalogue", "gateway_service", "ladder", "programme"]
