"""The member page's languages, as the console's (console/i18n.py): zh-CN by default, English
by a cookie of the page's own; strings in `locales/me.<lang>.json`."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

from loyalty_gateway.console.i18n import DEFAULT, LANGS, language

__all__ = ["COOKIE", "DEFAULT", "LANGS", "catalogue", "language", "translator"]

COOKIE = "loyalty_me_lang"
LOCALES = Path(__file__).parent / "locales"


@cache
def catalogue(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted(LOCALES.glob(f"*.{lang}.json")):
        merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged


def translator(lang: str) -> Callable[..., str]:
    strings = catalogue(language(lang))

    def t(key: str, **values: object) -> str:
        text = strings.get(key, key)
        return text.format(**values) if values else text

    return t
