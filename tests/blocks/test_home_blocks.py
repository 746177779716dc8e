"""The App Home view's frame (`blocks.home.home_view`): Slack refuses a Home view of more than
100 blocks (views.publish: invalid_arguments), so what the role sections add beyond that is cut,
and the view says so."""

from __future__ import annotations

from blocks.common import section
from blocks.home import home_view
from blocks.text import VIEW_BLOCKS_MAX


def test_a_home_with_more_than_100_blocks_is_cut_and_says_how_many_more() -> None:
    # given: sections adding 150 blocks (an admin who is also a collector and an approver,
    # with KPIs in many currencies)
    extra = [section(f"row {n}") for n in range(150)]
    # when
    view = home_view("Ada <!channel>", ["admin", "collector"], extra)
    # then: within Slack's limit, the last block saying what was left out
    blocks = view["blocks"]
    assert len(blocks) == VIEW_BLOCKS_MAX
    assert blocks[-1]["type"] == "context"
    shown = sum(1 for b in blocks if b.get("text", {}).get("text", "").startswith("row "))
    assert f"{150 - shown} more not shown" in blocks[-1]["elements"][0]["text"]
    assert "<!channel>" not in str(blocks)


def test_a_home_within_the_limit_is_whole() -> None:
    extra = [section(f"row {n}") for n in range(96)]
    blocks = home_view("Ada", ["admin"], extra)["blocks"]
    assert len(blocks) == VIEW_BLOCKS_MAX and blocks[-1]["text"]["text"] == "row 95"
