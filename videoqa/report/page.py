"""The HTML page: static header and filters, the data as inline JSON, and the script and stylesheet
shipped beside this module (report.js, report.css), inlined so one file opens from disk.

Safety: the header is escaped HTML; the cards are built by the script from the JSON with text nodes
only (never innerHTML); the JSON is embedded with <, > and & as \\u escapes, so no caption can close
the script element or open a comment. A Content-Security-Policy allows only this page's own script
and stylesheet (by hash) and local images: the page makes no network request.
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from importlib.resources import files
from typing import Any

OUTCOME_LABELS = {
    "correct": "correct",
    "wrong": "wrong (valid answer)",
    "invalid": "invalid",
    "failed": "failed",
    "unlabelled": "no answer key",
}


def asset(name: str) -> str:
    return (files("videoqa.report") / name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no "</script>", "<!--" or line separators."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def filters_html(data: dict[str, Any]) -> str:
    """The filter bar; its state lives in the URL fragment (report.js)."""
    boxes = "".join(
        f'<label><input type="checkbox" name="outcome" value="{escape(o)}" checked> {escape(OUTCOME_LABELS[o])} '
        f'<span class="n">({data["outcome_counts"].get(o, 0)})</span></label>'
        for o in data["outcomes"]
    )
    runs = data["runs"]
    run_select = ""
    if len(runs) > 1:
        options = '<option value="any">any run</option>' + "".join(
            f'<option value="{i}">{escape(r["label"])}</option>' for i, r in enumerate(runs)
        )
        run_select = f'<label>in <select id="f-run">{options}</select></label>'
    categories = ""
    if data["categories"]:
        options = '<option value="">all categories</option>' + "".join(
            f'<option value="{escape(c)}">{escape(c)}</option>' for c in data["categories"]
        )
        categories = f'<label>category <select id="f-cat">{options}</select></label>'
    disagree = (
        '<label title="one run right, another wrong"><input type="checkbox" id="f-dis"> runs disagree</label>'
        if len(runs) > 1
        else ""
    )
    return (
        '<nav id="filters" aria-label="filters">'
        f'<span class="group">{boxes}</span>{run_select}{categories}{disagree}'
        '<label>search <input type="search" id="f-text" placeholder="questions, options, captions"></label>'
        '<span id="f-count" role="status"></span> <a id="f-reset" href="#">reset</a>'
        "</nav>"
    )


def render_page(title: str, header: str, data: dict[str, Any]) -> str:
    script, style = asset("report.js"), asset("report.css")
    policy = (
        f"default-src 'none'; img-src 'self' file: data:; style-src {csp_hash(style)}; script-src {csp_hash(script)}"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(policy, quote=False)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{style}</style></head>\n<body>\n"
        f"{header}\n{filters_html(data)}\n"
        '<main id="cards" aria-live="polite"></main><div id="more"></div>\n'
        '<noscript><p class="note">The question cards need JavaScript; the header above is static.</p></noscript>\n'
        f'<script type="application/json" id="report-data">{embed_json(data)}</script>\n'
        f"<script>{script}</script>\n</body></html>\n"
    )
