"""Take docs/sandbox.png and docs/app-home.png (the README's screenshots): run `o2c demo`,
open the sandbox in Debian's chromium, look at #approvals as the credit approver and ask
`/o2c ar`; then open the credit approver's App Home (their queue with the cards' buttons).

    .venv/bin/python docs/screenshot.py [docs/sandbox.png]

Emoji show as emoji with a colour emoji font (Debian: fonts-noto-color-emoji).

Needs /usr/bin/chromium and the dev extras (playwright). Uses the real demo seed (bot.seed);
until that is merged, the test suite's stand-in seed.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sandbox_web.test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.sandbox_web.test_demo import DEMO  # noqa: E402
from tests.support.demo_seed import CREDIT_APPROVER  # noqa: E402


def main(out: Path) -> int:
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        demo = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-c", DEMO, str(port), f"{tmp}/demo.db"], cwd=ROOT,
            stdout=subprocess.PIPE, text=True)
        try:
            url = demo.stdout.readline().split()[-1]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(url)
                page.get_by_label("You are").select_option(CREDIT_APPROVER)
                page.get_by_role("link", name="# approvals", exact=True).click()
                expect(page.get_by_role("button", name="Approve").first).to_be_visible()
                box = page.get_by_label("Message", exact=True)
                box.fill("/o2c ar")
                box.press("Enter")
                expect(page.locator("article.ephemeral")).to_be_visible()
                page.wait_for_timeout(300)
                page.screenshot(path=str(out))
                page.get_by_role("link", name="o2c-bot — Home", exact=True).click()
                expect(page.locator("#messages")).to_contain_text("Waiting for your decision")
                page.wait_for_timeout(300)
                home = out.with_name("app-home.png")
                page.screenshot(path=str(home))
                print(f"wrote {home}")
                browser.close()
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(20)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "sandbox.png")))
