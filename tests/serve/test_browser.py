"""End to end in a real browser: Playwright drives Debian's Chromium (headless) on the search page."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from xmodal.serve import create_app

CHROMIUM = Path(os.environ.get("XMODAL_CHROMIUM", "/usr/bin/chromium"))

pytestmark = [pytest.mark.data, pytest.mark.weights]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set XMODAL_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def url(small_index):
    """The service on a free loopback port, in a thread of this process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(small_index), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


ALL_THUMBNAILS_LOADED = "[...document.querySelectorAll('.result img')].every(i => i.complete && i.naturalWidth > 0)"

DROP_IMAGE = """async (thumbnail) => {
  const blob = await (await fetch(thumbnail)).blob();
  const files = new DataTransfer();
  files.items.add(new File([blob], "dropped.jpg", {type: "image/jpeg"}));
  window.dispatchEvent(new DragEvent("drop", {dataTransfer: files, cancelable: true}));
}"""


def test_type_a_query_see_thumbnails_read_captions_drop_an_image(browser, url, flickr8k, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.fill("#q", "two dogs play in the snow")
    page.press("#q", "Enter")
    page.wait_for_selector(".result img")
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    assert page.locator(".result img").count() == 16  # the page's default k
    assert "16 results for “two dogs play in the snow”" in page.text_content("#status")

    page.locator(".result").first.click()
    page.wait_for_selector("#captions li")
    assert page.locator("#captions li").count() == 5
    page.screenshot(path=tmp_path / "search.png", full_page=True)
    assert (tmp_path / "search.png").stat().st_size > 10_000

    target = page.locator(".result img").nth(3).get_attribute("src")
    page.evaluate(DROP_IMAGE, target)
    page.wait_for_function("document.querySelector('#status').textContent.includes('image dropped.jpg')")
    page.wait_for_function(ALL_THUMBNAILS_LOADED)
    assert page.locator(".result img").first.get_attribute("src") == target

    page.fill("#q", "   ")
    page.press("#q", "Enter")
    page.wait_for_selector("#status.error")
    assert "the text query is empty" in page.text_content("#status")
    page.close()
