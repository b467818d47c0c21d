"""The member code drawn for a till's scanner: a QR code (segno) and a Code 128 barcode, both
as inline SVG with presentation attributes only (the page's CSP allows no inline style), and
its digits grouped for reading aloud or typing."""

from __future__ import annotations

import barcode
import segno
from markupsafe import Markup, escape

BAR_HEIGHT = 60
QUIET = 10  # modules of white either side of the bars


def _digits(code: str) -> str:
    if not code.isascii() or not code.isdigit():
        raise ValueError("a member code is digits only")
    return code


def qr_svg(payload: str, title: str) -> Markup:
    """The QR code of the payload (the code's digits), scalable with its box."""
    qr = segno.make_qr(_digits(payload), error="m")
    svg = qr.svg_inline(
        scale=1, border=4, dark="#000", light="#fff", omitsize=True, title=title, svgclass="qr"
    )
    svg = svg.replace("<svg ", '<svg role="img" ', 1)
    return Markup(svg)  # made by segno from digits only


def barcode_svg(code: str, title: str) -> Markup:
    """The Code 128 barcode of the code (python-barcode's encoding, set C for the digits),
    drawn as one path of bars."""
    (modules,) = barcode.get("code128", _digits(code)).build()
    bars: list[str] = []
    run = 0
    for at, bit in enumerate(modules + "0"):
        if bit == "1":
            run += 1
        elif run:
            bars.append(f"M{QUIET + at - run} 0h{run}v{BAR_HEIGHT}h-{run}z")
            run = 0
    width = len(modules) + 2 * QUIET
    path = "".join(bars)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="barcode" role="img" '
        f'viewBox="0 0 {width} {BAR_HEIGHT}" preserveAspectRatio="none">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{BAR_HEIGHT}" fill="#fff"/>'
        f'<path fill="#000" d="{path}"/></svg>'
    )
    return Markup(svg)  # bars of digits and an escaped title


def grouped(code: str) -> str:
    """ "660123456789012345" -> "66 0123 4567 8901 2345": the prefix, then fours."""
    digits = _digits(code)
    head, rest = digits[:2], digits[2:]
    return " ".join([head, *(rest[i : i + 4] for i in range(0, len(rest), 4))])
