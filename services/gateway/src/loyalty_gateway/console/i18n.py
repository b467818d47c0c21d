"""The console's languages: zh-CN by default, English by a cookie. Strings live in
`locales/<part>.<lang>.json` (one file per page and language, merged), so each page brings its
own; a test checks every language has the same keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

LANGS = ("zh-CN", "en")
DEFAULT = "zh-CN"
COOKIE = "loyalty_console_lang"
LOCALES = Path(__file__).parent / "locales"


@cache
def catalogue(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted(LOCALES.glob(f"*.{lang}.json")):
        merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged


def language(cookie: str | None) -> str:
    return cookie if cookie in LANGS else DEFAULT


def translator(lang: str) -> Callable[..., str]:
    strings = catalogue(language(lang))

    def t(key: str, **values: object) -> str:
        text = strings.get(key, key)
        return text.format(**values) if values else text

    return t
