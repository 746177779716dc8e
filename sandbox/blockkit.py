"""Block Kit validation with Slack's limits, as pure functions.

Why: Slack rejects oversized or malformed Block Kit with ``invalid_blocks`` (messages) or
``invalid_arguments`` (views) and the bot only finds out in production. The stand-in runs the
same checks on every surface it accepts, and unit tests of block builders can call
:func:`validate_blocks` / :func:`validate_view` directly without any server.

Errors are strings in Slack's own style, ``"<problem> [json-pointer:/blocks/0/text/text]"``;
view errors carry Slack's ``"[ERROR] "`` prefix and a ``/view/...`` pointer.
The rules cover the limits Slack documents for the blocks and elements o2c-bot uses; unknown
block or element types are rejected like Slack does.
"""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}
TEXT_TYPES = ("plain_text", "mrkdwn")
BLOCK_TYPES = frozenset({
    "section", "divider", "image", "actions", "context", "input", "header", "file",
    "rich_text", "video", "markdown", "table", "context_actions",
})
_SELECTS = ("static_select", "external_select", "users_select", "conversations_select",
            "channels_select")
SELECT_TYPES = frozenset(_SELECTS)
MULTI_SELECT_TYPES = frozenset("multi_" + s for s in _SELECTS)
INPUT_ELEMENT_TYPES = frozenset({
    "checkboxes", "datepicker", "datetimepicker", "email_text_input", "file_input",
    "number_input", "plain_text_input", "radio_buttons", "rich_text_input", "timepicker",
    "url_text_input",
}) | SELECT_TYPES | MULTI_SELECT_TYPES
INTERACTIVE_ELEMENT_TYPES = INPUT_ELEMENT_TYPES | {"button", "overflow", "workflow_button"}
ACCESSORY_TYPES = INTERACTIVE_ELEMENT_TYPES | {"image"}
_OPTION_LIMITS = {  # element type -> (max options, option text may be mrkdwn)
    "static_select": (100, False), "multi_static_select": (100, False),
    "overflow": (5, False), "checkboxes": (10, True), "radio_buttons": (10, True),
}


class _Checker:
    """Walks one surface, collecting errors; tracks block_ids for the uniqueness rule."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.block_ids: set[str] = set()

    def err(self, problem: str, path: str) -> None:
        self.errors.append(f"{problem} [json-pointer:{path}]")

    def string(self, value: Any, path: str, max_len: int, *, required: bool = False) -> None:
        if value is None:
            if required:
                self.err("must provide a string", path)
            return
        if not isinstance(value, str):
            self.err("must provide a string", path)
        elif len(value) > max_len:
            self.err(f"must be less than {max_len + 1} characters", path)

    def text(self, obj: Any, path: str, max_len: int = 3000, *, plain_only: bool = False,
             required: bool = True) -> None:
        """A composition text object: ``{"type": "plain_text"|"mrkdwn", "text": ...}``."""
        if obj is None:
            if required:
                self.err("must provide an object", path)
            return
        if not isinstance(obj, dict):
            self.err("must provide an object", path)
            return
        kind = obj.get("type")
        if kind not in TEXT_TYPES or (plain_only and kind != "plain_text"):
            self.err("must be a valid enum value", f"{path}/type")
        value = obj.get("text")
        if not isinstance(value, str):
            self.err("must provide a string", f"{path}/text")
        elif not value:
            self.err("must be more than 0 characters", f"{path}/text")
        elif len(value) > max_len:
            self.err(f"must be less than {max_len + 1} characters", f"{path}/text")

    def items(self, value: Any, path: str, max_items: int, *, required: bool = True) -> list:
        if value is None:
            if required:
                self.err("must provide an array", path)
            return []
        if not isinstance(value, list):
            self.err("must provide an array", path)
            return []
        if len(value) > max_items:
            self.err(f"no more than {max_items} items allowed", path)
        return value

    def blocks(self, blocks: Any, path: str, surface: str) -> None:
        limit = MAX_BLOCKS.get(surface, 50)
        for i, block in enumerate(self.items(blocks, path, limit)):
            self.block(block, f"{path}/{i}")

    def block(self, block: Any, path: str) -> None:
        if not isinstance(block, dict):
            self.err("must provide an object", path)
            return
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            self.err("must be a valid enum value", f"{path}/type")
            return
        block_id = block.get("block_id")
        self.string(block_id, f"{path}/block_id", 255)
        if isinstance(block_id, str):
            if block_id in self.block_ids:
                self.err(f"duplicate block_id: {block_id}", f"{path}/block_id")
            self.block_ids.add(block_id)
        check = getattr(self, f"block_{kind}", None)
        if check is not None:
            check(block, path)

    def block_section(self, block: dict, path: str) -> None:
        if block.get("text") is None and block.get("fields") is None:
            self.err("must provide one of: text, fields", path)
        self.text(block.get("text"), f"{path}/text", 3000, required=False)
        for i, field in enumerate(self.items(block.get("fields"), f"{path}/fields", 10,
                                             required=False)):
            self.text(field, f"{path}/fields/{i}", 2000)
        if block.get("accessory") is not None:
            self.element(block["accessory"], f"{path}/accessory", ACCESSORY_TYPES)

    def block_header(self, block: dict, path: str) -> None:
        self.text(block.get("text"), f"{path}/text", 150, plain_only=True)

    def block_actions(self, block: dict, path: str) -> None:
        action_ids: set[str] = set()
        for i, el in enumerate(self.items(block.get("elements"), f"{path}/elements", 25)):
            self.element(el, f"{path}/elements/{i}", INTERACTIVE_ELEMENT_TYPES)
            action_id = el.get("action_id") if isinstance(el, dict) else None
            if isinstance(action_id, str):
                if action_id in action_ids:
                    self.err(f"duplicate action_id: {action_id}",
                             f"{path}/elements/{i}/action_id")
                action_ids.add(action_id)

    def block_context(self, block: dict, path: str) -> None:
        for i, el in enumerate(self.items(block.get("elements"), f"{path}/elements", 10)):
            if isinstance(el, dict) and el.get("type") == "image":
                self.image(el, f"{path}/elements/{i}")
            else:
                self.text(el, f"{path}/elements/{i}")

    def block_input(self, block: dict, path: str) -> None:
        self.text(block.get("label"), f"{path}/label", 2000, plain_only=True)
        self.text(block.get("hint"), f"{path}/hint", 2000, plain_only=True, required=False)
        if block.get("element") is None:
            self.err("must provide an object", f"{path}/element")
        else:
            self.element(block["element"], f"{path}/element", INPUT_ELEMENT_TYPES)

    def block_image(self, block: dict, path: str) -> None:
        self.image(block, path)
        self.text(block.get("title"), f"{path}/title", 2000, plain_only=True, required=False)

    def image(self, obj: dict, path: str) -> None:
        if obj.get("image_url") is None and obj.get("slack_file") is None:
            self.err("must provide one of: image_url, slack_file", path)
        self.string(obj.get("image_url"), f"{path}/image_url", 3000)
        self.string(obj.get("alt_text"), f"{path}/alt_text", 2000, required=True)

    def element(self, el: Any, path: str, allowed: frozenset | set) -> None:
        if not isinstance(el, dict):
            self.err("must provide an object", path)
            return
        kind = el.get("type")
        if kind not in allowed:
            self.err("must be a valid enum value", f"{path}/type")
            return
        if kind == "image":
            self.image(el, path)
            return
        self.string(el.get("action_id"), f"{path}/action_id", 255)
        self.text(el.get("placeholder"), f"{path}/placeholder", 150, plain_only=True,
                  required=False)
        if el.get("confirm") is not None:
            self.confirm(el["confirm"], f"{path}/confirm")
        if kind in ("button", "workflow_button"):
            self.text(el.get("text"), f"{path}/text", 75, plain_only=True)
            self.string(el.get("value"), f"{path}/value", 2000)
            self.string(el.get("url"), f"{path}/url", 3000)
            if el.get("style") not in (None, "primary", "danger"):
                self.err("must be a valid enum value", f"{path}/style")
        elif kind in _OPTION_LIMITS:
            max_options, mrkdwn_ok = _OPTION_LIMITS[kind]
            if el.get("options") is None and el.get("option_groups") is None:
                self.err("must provide one of: options, option_groups", path)
            self.options(el.get("options"), f"{path}/options", max_options, mrkdwn_ok)
            groups = self.items(el.get("option_groups"), f"{path}/option_groups", 100,
                                required=False)
            for i, group in enumerate(groups):
                gpath = f"{path}/option_groups/{i}"
                if not isinstance(group, dict):
                    self.err("must provide an object", gpath)
                    continue
                self.text(group.get("label"), f"{gpath}/label", 75, plain_only=True)
                self.options(group.get("options"), f"{gpath}/options", 100, False)
        elif kind in ("plain_text_input", "email_text_input", "url_text_input"):
            self.string(el.get("initial_value"), f"{path}/initial_value", 3000)

    def options(self, options: Any, path: str, max_items: int, mrkdwn_ok: bool) -> None:
        for i, opt in enumerate(self.items(options, path, max_items, required=False)):
            opath = f"{path}/{i}"
            if not isinstance(opt, dict):
                self.err("must provide an object", opath)
                continue
            self.text(opt.get("text"), f"{opath}/text", 75, plain_only=not mrkdwn_ok)
            self.string(opt.get("value"), f"{opath}/value", 150, required=True)
            self.text(opt.get("description"), f"{opath}/description", 75, required=False)

    def confirm(self, obj: Any, path: str) -> None:
        if not isinstance(obj, dict):
            self.err("must provide an object", path)
            return
        self.text(obj.get("title"), f"{path}/title", 100, plain_only=True)
        self.text(obj.get("text"), f"{path}/text", 300)
        self.text(obj.get("confirm"), f"{path}/confirm", 30, plain_only=True)
        self.text(obj.get("deny"), f"{path}/deny", 30, plain_only=True)


def validate_blocks(blocks: Any, surface: str = "message") -> list[str]:
    """Check a ``blocks`` array the way Slack does for ``surface`` ("message", "modal", "home").

    Returns Slack-style error strings (empty when valid), e.g.
    ``"must be less than 3001 characters [json-pointer:/blocks/0/text/text]"``.
    """
    if surface not in MAX_BLOCKS:
        raise ValueError(f"unknown surface {surface!r}; use message, modal or home")
    checker = _Checker()
    checker.blocks(blocks, "/blocks", surface)
    return checker.errors


def validate_view(view: Any) -> list[str]:
    """Check a ``view`` payload (modal or home tab) like views.open/update/push/publish.

    Returns Slack's ``response_metadata.messages`` style strings, e.g.
    ``"[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"``.
    """
    checker = _Checker()
    if not isinstance(view, dict):
        checker.err("must provide an object", "/view")
        return ["[ERROR] " + e for e in checker.errors]
    kind = view.get("type")
    if kind not in ("modal", "home"):
        checker.err("must be a valid enum value", "/view/type")
        kind = "modal"
    if kind == "modal":
        checker.text(view.get("title"), "/view/title", 24, plain_only=True)
        checker.text(view.get("submit"), "/view/submit", 24, plain_only=True, required=False)
        checker.text(view.get("close"), "/view/close", 24, plain_only=True, required=False)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and view.get("submit") is None:
            checker.err("must provide submit when the view contains input blocks", "/view")
    checker.string(view.get("private_metadata"), "/view/private_metadata", 3000)
    checker.string(view.get("callback_id"), "/view/callback_id", 255)
    checker.string(view.get("external_id"), "/view/external_id", 255)
    checker.blocks(view.get("blocks"), "/view/blocks", kind)
    return ["[ERROR] " + e for e in checker.errors]


def validate_message(params: dict) -> tuple[str | None, list[str]]:
    """Check a message payload (chat.* / response_url). Returns ``(error_code, errors)``.

    ``error_code`` is None when valid, else Slack's code: ``no_text``, ``msg_too_long`` or
    ``invalid_blocks`` (then ``errors`` lists the block problems).
    """
    text, blocks, attachments = params.get("text"), params.get("blocks"), params.get("attachments")
    if not text and not blocks and not attachments:
        return "no_text", []
    if isinstance(text, str) and len(text) > 40000:
        return "msg_too_long", []
    if blocks is not None:
        errors = validate_blocks(blocks, "message")
        if errors:
            return "invalid_blocks", errors
    return None, []
