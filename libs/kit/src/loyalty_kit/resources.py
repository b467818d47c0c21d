"""Moved to the shared kernel (`loyalty_kit.kernel.members`, `loyalty_kit.kernel.units`): kept
so code not yet moved there still imports these names from here."""

from loyalty_kit.kernel.members import (
    MEMBERS,
    TAG,
    TAG_HINT,
    is_tag,
    member_id_of,
    member_name,
)
from loyalty_kit.kernel.units import unit_of

__all__ = ["MEMBERS", "TAG", "TAG_HINT", "is_tag", "member_id_of", "member_name", "unit_of"]
