# The points fixtures (a running points service with the Huayue programme, a client that
# registers members through identity) serve the tiers tests too.
from tests.points.conftest import points, programme

__all__ = ["points", "programme"]
