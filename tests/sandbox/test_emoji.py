"""Every emoji shortcode the product shows renders in the sandbox as it does in Slack
(issue 13, point 6): the shortcodes written in the user-facing code (blocks/, handlers/) and
those in every registered template rendered from its realistic context are all in the
sandbox page's emoji table, so none shows as `:text:` there."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from blocks import templates
from tests.blocks.test_template_escaping import CONTEXTS

ROOT = Path(__file__).resolve().parents[2]
SHORTCODE = re.compile(r"(?<![\w:]):([a-z][a-z0-9_+-]*):(?![\w:])")


def sandbox_emoji() -> set[str]:
    js = (ROOT / "sandbox/static/app.js").read_text()
    table = js[js.index("const EMOJI"):js.index("const emojify")]
    return set(re.findall(r"([a-z0-9_+-]+): \"", table))


def in_source() -> dict[str, str]:
    """Shortcodes in string literals of the code that writes what people read."""
    found: dict[str, str] = {}
    for folder in ("blocks", "handlers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    for name in SHORTCODE.findall(node.value):
                        found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def in_templates() -> dict[str, str]:
    """Shortcodes in every template as rendered (each variant of its context)."""
    found: dict[str, str] = {}
    for name, variants in CONTEXTS.items():
        for variant, ctx in variants:
            rendered = json.dumps(templates.render(name, ctx), ensure_ascii=False)
            for code in SHORTCODE.findall(rendered):
                found.setdefault(code, f"{name}-{variant}")
    return found


def test_the_walk_finds_the_shortcodes_people_see() -> None:
    # the walk is not vacuous: it sees the cards' and the digest's emoji
    seen = {**in_source(), **in_templates()}
    assert {"white_check_mark", "credit_card", "alarm_clock", "zzz"} <= set(seen)
    assert len(in_templates()) >= 10


def test_every_shortcode_used_renders_in_the_sandbox() -> None:
    table = sandbox_emoji()
    missing = {code: where for code, where in {**in_source(), **in_templates()}.items()
               if code not in table}
    assert not missing, f"add these to EMOJI in sandbox/static/app.js: {missing}"
