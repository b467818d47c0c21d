"""The repository's documents stand on their own: every relative link they make leads to a file
in the repository, and none points outside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted(
    path
    for path in ROOT.glob("**/*.md")
    if not any(
        part.startswith(".") or part in {"third_party", "node_modules"}
        for part in path.relative_to(ROOT).parts
    )
)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_there_is_a_domain_guide_and_a_worked_example() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/domain.md" in readme and "docs/worked-example.md" in readme
    assert "3,086" in (ROOT / "docs" / "worked-example.md").read_text()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(document: Path) -> None:
    text = document.read_text()
    assert "../shared" not in text
    for target in _LINK.findall(text):
        if target.startswith("#") or re.match(r"^[a-z]+:", target):
            # Anchors, and URLs of the running suite (http://127.0.0.1...) only.
            assert (
                not target.startswith(("http://", "https://"))
                or "127.0.0.1" in target
                or "localhost" in target
            ), target
            continue
        resolved = (document.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{document}: {target} leaves the repository"
        assert resolved.exists(), f"{document}: {target} does not exist"
