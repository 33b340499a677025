"""Every dashboard page in headless Chromium on a hostile runs folder: no markup from the data renders.

``balpm dashboard`` serves the runs folder of :mod:`hostile_runs` (run folder names, the runs folder's
own name, status.json errors, config values, prompt ids, prompts and answers carrying a markdown
image and link to 203.0.113.9, ``<img>``/``<script>`` tags, ``:red[...]``, KaTeX, bare URLs, emoji
shortcodes, control characters). The test visits every page of ``dashboard/app.py``'s ``PAGES``
(read from the source, not copied), selects items on the Inspect page so that the prompts show, logs
every request the page makes, and asserts: no request leaves 127.0.0.1, and the DOM holds no image
or link to the hostile addresses, no KaTeX, no coloured-text directive, no shortcode emoji and no
injected script. A screenshot of every page goes to ``/tmp/hostile-<page>.png``. It waits on the
app's own state (script finished, no skeletons, elements present), never on a fixed short sleep.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import hostile_runs
import pytest
from test_dashboard_browser import ARGS, CHROMIUM, HANG, act, goto, idle, shot
from test_dashboard_hostile import app_pages

SHOTS = Path("/tmp")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                       reason="Debian chromium not installed at /usr/bin/chromium (bash setup.sh installs it)"),
]

# everything the page could do with the hostile strings, as DOM queries that must find nothing
HOSTILE_DOM = """() => {
    const host = '203.0.113.9';
    const found = [];
    for (const el of document.querySelectorAll('img, image, source, video, audio, iframe, embed, object, link')) {
        for (const attr of ['src', 'srcset', 'href', 'data', 'xlink:href']) {
            const v = el.getAttribute(attr) || '';
            if (v.includes(host)) found.push(el.tagName + ' ' + attr + '=' + v);
        }
    }
    for (const a of document.querySelectorAll('a[href]')) {
        const h = a.getAttribute('href');
        if (h.includes(host) || h.includes('example.com') || h.startsWith('mailto:')) found.push('A href=' + h);
    }
    for (const el of document.querySelectorAll('.katex, .katex-display, math, mjx-container')) {
        found.push('KaTeX: ' + el.textContent.slice(0, 60));
    }
    for (const el of document.querySelectorAll('[data-testid=stMarkdownContainer] span[style*="color"], '
                                               + '[class*="ColoredText"]')) {
        if (el.textContent.includes('boom') || el.textContent.includes('root')) found.push('colour: ' + el.textContent);
    }
    for (const s of document.querySelectorAll('script')) {
        if ((s.textContent || '').includes('alert(1)')) found.push('script: ' + s.textContent.slice(0, 60));
    }
    const text = document.body.innerText;
    for (const emoji of ['\\u{1F604}', '\\u{1F389}']) {  // :smile: and :tada: turned into emoji
        if (text.includes(emoji)) found.push('emoji ' + emoji);
    }
    return found;
}"""


@pytest.fixture(scope="module")
def server(hostile_runs_root, dashboard_server) -> str:
    return dashboard_server(hostile_runs_root)  # both in tests/conftest.py


def test_no_page_renders_markup_from_a_hostile_runs_folder(server):
    from playwright.sync_api import sync_playwright

    pages = app_pages()
    requests: list[str] = []
    page_errors: list[str] = []
    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(server)
        idle(page)
        for path, title in pages:
            goto(page, title)
            assert page.locator("[data-testid='stException']").count() == 0, \
                page.locator("[data-testid='stException']").first.inner_text()
            name = Path(path).stem
            if name == "runs":  # the hostile texts are on screen: the error, the renamed folder, the bad config
                page.get_by_text("203.0.113.9/x.png").first.wait_for(timeout=HANG * 1000)
                assert page.get_by_text("![x](http").count() >= 1  # the renamed folder, as typed
                assert page.locator("[data-testid='stSidebar']").get_by_text(hostile_runs.ROOT).count() >= 1
            if name == "inspect":  # pick one acquired item: its hostile prompt id, prompt and answers show
                page.locator("[data-testid='stMultiSelect']", has_text="acquired items").locator("input").first.click()
                option = page.locator("[role='option']", has_text="pool ").first  # not "select all"
                option.wait_for(timeout=HANG * 1000)
                option.click()
                act(page, lambda: page.keyboard.press("Escape"))
                page.get_by_text("1 selected item(s)").first.wait_for(timeout=HANG * 1000)
                idle(page)
                # the prompt as plain text in the open expander, tags and all
                page.locator("[data-testid='stText']", has_text="<script>alert(1)</script>").first.wait_for(timeout=HANG * 1000)
            found = page.evaluate(HOSTILE_DOM)
            assert not found, f"{title}: markup from the data rendered: {found[:5]}"
            shots.append(shot(page, SHOTS / f"hostile-{name}.png"))
        browser.close()
    offsite = [u for u in requests if not re.match(r"^(http://127\.0\.0\.1:\d+/|data:|blob:)", u)]
    assert requests and not offsite, f"requests left 127.0.0.1: {offsite[:5]}"
    assert not page_errors, page_errors[:3]
    assert all(p.stat().st_size > 10_000 for p in shots) and len(shots) == len(pages)
