"""Escaping for everything a user names (studies, parameter values, CSV labels) on our pages."""

from __future__ import annotations

import html
import json
import math
from typing import Any


def esc(value: Any) -> str:
    """Text for HTML element content and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def script_literal(text: str) -> str:
    """``text`` as a JavaScript string literal that is safe inside <script>: no '</script>',
    '<!--' or '<script' can appear in it, whatever ``text`` holds."""
    return js_safe(json.dumps(text))


def js_safe(code: str) -> str:
    """JSON (or a JS literal made by json.dumps) made safe to inline in <script>: '</' becomes
    '<\\/' and '<!--' becomes '\\u003c!--', the same strings to JavaScript and to JSON parsers
    (in JSON text '<' only occurs inside strings, where both escapes are valid)."""
    return code.replace("</", "<\\/").replace("<!--", "\\u003c!--")


def script_json(value: Any) -> str:
    """A JSON value inlined in <script> (non-finite floats become null, as JSON has none)."""
    return js_safe(json.dumps(_finite(value), separators=(",", ":")))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats with ``digits`` significant digits, None/NaN as empty."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)
