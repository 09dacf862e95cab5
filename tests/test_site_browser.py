"""The documentation site in a real browser (headless Chromium from Debian's packages, driven
through chromedriver by selenium): the site is built once for the module, served on 127.0.0.1,
and read at 1,280 pixels wide, as a newcomer's laptop shows it.

* the home page and a board page render (title, navigation, the board's table);
* every table of every page fits the content column, or scrolls sideways and says so (the
  note docs/javascripts/wide-tables.js adds); the boards' tables must simply fit;
* the boards' tables sort when a header is clicked (docs/javascripts/sort-tables.js promises it);
* every plot (image) loads.

Skipped, with the reason, only where Chromium or its chromedriver is missing (``apt-get install
chromium chromium-driver``; ``.ci/run`` installs them); selenium comes with the test extra. A
screenshot of the board at 1,280 pixels is left in the test's tmp folder (``board-1280.png``).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH = 1280
BOARD = "digits"  # the board page every check visits (the first protocol with entries)

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"no headless browser: {CHROMIUM} and chromedriver come from Debian's chromium and "
                "chromium-driver packages (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402  (the test extra; it downloads no browser)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@dataclass(frozen=True)
class Site:
    folder: Path  # the built site
    url: str  # where it is served, ending in /

    def pages(self) -> list[str]:
        """Every page's path below the URL ('' for the home page, 'leaderboards/digits/')."""
        folders = (p.parent.relative_to(self.folder).as_posix() for p in self.folder.rglob("index.html"))
        return sorted("" if f == "." else f + "/" for f in folders if f != "404")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    """The site, built once for the module and served on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("site") / "site"
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Site(folder, f"http://127.0.0.1:{server.server_address[1]}/")
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 f"--window-size={WIDTH},1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def visit(browser, url: str) -> None:
    browser.get(url)
    # Material's bundle and the site's scripts run after load: wait until the tables are marked
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const ready = () => [...document.querySelectorAll('article table')].every(t => t.dataset.scrolls);
        const start = Date.now();
        (function wait() { ready() || Date.now() - start > 10000 ? done() : setTimeout(wait, 50); })();
    """)


#: what every table of the page measures: its own width, the content column's, whether it sits in
#: a scrolling box that is scrolled-over, and the note above it
MEASURE_TABLES = """
    const content = document.querySelector('article').clientWidth;
    return [...document.querySelectorAll('article table')].map(table => {
        const wrap = table.closest('.md-typeset__scrollwrap') || table;
        const note = wrap.previousElementSibling;
        return {
            header: [...table.tHead.rows[0].cells].map(c => c.textContent.trim()).join(' | '),
            width: Math.ceil(table.getBoundingClientRect().width), content: content,
            scrolls: wrap.scrollWidth > wrap.clientWidth + 1,
            note: note && note.classList.contains('wide-table-note') ? note.textContent : null,
        };
    });
"""


def test_the_home_page_and_a_board_render(browser, site):
    visit(browser, site.url)
    assert browser.title.startswith("stxbench")
    assert browser.execute_script("return document.querySelectorAll('nav.md-nav a').length") > 20
    assert "spiking Transformers" in browser.find_element("css selector", "article").text
    visit(browser, f"{site.url}leaderboards/{BOARD}/")
    assert browser.find_element("css selector", "article h1").text.startswith(f"Leaderboard: {BOARD}")
    rows = browser.execute_script("return document.querySelector('article table').tBodies[0].rows.length")
    entries = len(list((ROOT / "leaderboards" / BOARD / "entries").glob("*.json")))
    assert 0 < rows <= entries


def test_every_table_fits_1280_pixels_or_scrolls_and_says_so(browser, site, tmp_path):
    wide, unmarked = [], []
    pages = site.pages()
    assert "" in pages and f"leaderboards/{BOARD}/" in pages and len(pages) > 20
    for page in pages:
        visit(browser, site.url + page)
        for table in browser.execute_script(MEASURE_TABLES):
            if table["width"] <= table["content"] and not table["scrolls"]:
                continue
            wide.append((page, table["header"], table["width"], table["content"]))
            if not (table["scrolls"] and table["note"] and "scroll it sideways" in table["note"]):
                unmarked.append(wide[-1])
    assert unmarked == [], f"tables wider than the page that do not say they scroll: {unmarked}"
    # the boards are rendered compact: none of their tables may need scrolling at all
    assert [w for w in wide if w[0].startswith("leaderboards/")] == []
    visit(browser, f"{site.url}leaderboards/{BOARD}/")
    shot = tmp_path / "board-1280.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_a_scrolling_table_says_so_and_a_narrow_window_marks_the_board(browser, site):
    """The note is not decoration: in a phone's 480 pixels the board's main table no longer
    fits, and the page says so above it; back at 1,280 the note goes."""
    try:
        browser.set_window_size(480, 1000)
        visit(browser, f"{site.url}leaderboards/{BOARD}/")
        first = browser.execute_script(MEASURE_TABLES)[0]
        assert first["scrolls"] and "scroll it sideways" in first["note"]
    finally:
        browser.set_window_size(WIDTH, 1000)
    visit(browser, f"{site.url}leaderboards/{BOARD}/")
    first = browser.execute_script(MEASURE_TABLES)[0]
    assert not first["scrolls"] and first["note"] is None


SORT_BY = """
    const table = document.querySelector('article table');
    const column = [...table.tHead.rows[0].cells].findIndex(c => c.textContent.trim() === arguments[0]);
    table.tHead.rows[0].cells[column].click();
    return [...table.tBodies[0].rows].map(r => r.cells[column].textContent.trim());
"""


def _number(cell: str) -> float:
    return float(cell.replace(",", "").split()[0])


def test_board_tables_sort_by_a_clicked_column(browser, site):
    visit(browser, f"{site.url}leaderboards/{BOARD}/")
    energy = browser.execute_script(SORT_BY, "energy (mJ)")
    assert len(energy) > 2 and energy == sorted(energy, key=_number)
    assert browser.execute_script(SORT_BY, "energy (mJ)") == sorted(energy, key=_number, reverse=True)
    accuracy = browser.execute_script(SORT_BY, "accuracy (%)")
    assert [_number(a) for a in accuracy] == sorted(_number(a) for a in accuracy)
    labels = browser.execute_script(SORT_BY, "neuron / pruner / backend")
    assert labels == sorted(labels, key=str.lower)


def test_every_plot_loads(browser, site):
    boards = [p for p in site.pages() if p.startswith("leaderboards/") and p.count("/") == 2
              and p != "leaderboards/legacy/"]  # the retired boards' index has no plots of its own
    assert f"leaderboards/{BOARD}/" in boards
    for page in boards:
        visit(browser, site.url + page)
        images = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const images = [...document.querySelectorAll('article img')];
            Promise.all(images.map(i => i.decode().catch(() => null))).then(() =>
                done(images.map(i => [i.getAttribute('src'), i.naturalWidth])));
        """)
        assert len(images) >= 3, page  # accuracy vs energy, vs parameters, energy by layer
        assert [src for src, width in images if width == 0] == [], page
