"""End to end in a real browser: Playwright drives Debian's Chromium (headless) on the search page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xmodal.serve import create_app

pytestmark = [pytest.mark.data, pytest.mark.weights]


@pytest.fixture(scope="module")
def url(small_index, serving) -> Iterator[str]:
    """The service on a free loopback port, in a thread of this process."""
    with serving(create_app(small_index)) as address:
        yield address


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
