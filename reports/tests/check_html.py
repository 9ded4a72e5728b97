"""report.html in a real browser: Debian's chromium, headless, driven by Playwright. For each run
folder: the page loads with no console error, page error, dialog or network request (the file is
self-contained); the heat-map shows one cell per record of records.jsonl (read here with the json
module); a click on every cell (at most 40) shows that case's id in the details, and for the
hand-written edge run (reports/tests/data) the exact message, quotes, <, &, tab, newline and
non-ASCII included; an axis filter leaves exactly the cases with that value; a screenshot is
saved as report.png beside the page.
Usage: check_html.py RUN_DIR...   (CHROMIUM: the browser, default /usr/bin/chromium)
"""
import json
import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from watched_page import open_watched


def read_records(path):
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for i, line in enumerate(lines):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                assert i == len(lines) - 1, f"{path}:{i + 1}: malformed line"
    return records


def check(browser, run_dir):
    records = read_records(run_dir / "records.jsonl")
    page, problems = open_watched(browser, run_dir / "report.html", {"width": 1400, "height": 900})
    cells = page.locator("button.case")
    assert cells.count() == len(records), (run_dir.name, cells.count(), len(records))
    for i, r in enumerate(records[:40]):
        page.click(f'button.case[data-index="{i}"]')
        shown = page.inner_text("#details h3")
        assert shown == r["case"], (run_dir.name, i, shown, r["case"])
        if r["message"]:
            text = page.locator("#details pre.message").evaluate("e => e.textContent")
            assert text == r["message"], (run_dir.name, i, text, r["message"])
    if records:
        # The first axis filter: its first value leaves the cases whose axes have that value.
        select = page.locator("select[data-axis]").first
        if select.count():
            axis = select.get_attribute("data-axis")
            value = select.locator("option").nth(1).get_attribute("value")
            select.select_option(value)

            def shown_value(r):
                axes = r["axes"]
                v = axes.get(axis, "-")
                return v + "+dq" if axis == "weights" and axes.get("double_quant") == "true" else v
            report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
            want = sum(1 for r in report["cases"] if shown_value(r) == value)
            assert page.locator("button.case").count() == want, (run_dir.name, axis, value, want)
            select.select_option("")
        page.click('button.case[data-index="0"]')
    if run_dir.name == "edge":
        assert page.locator(".banner").count() == 0
        assert "Débian" in page.inner_text("header")
    if run_dir.name == "cut":
        assert "cut short" in page.inner_text(".banner")
    page.screenshot(path=str(run_dir / "report.png"), full_page=True)
    page.close()
    assert not problems, (run_dir.name, problems)
    print(f"{run_dir}/report.html: {len(records)} cells, clicks right, no errors; report.png")


if __name__ == "__main__":
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=["--no-sandbox"])
        try:
            for d in sys.argv[1:]:
                check(browser, Path(d))
        finally:
            browser.close()
