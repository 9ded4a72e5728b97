"""compatibility.html (qlora-compat merge) in a real browser: Debian's chromium, headless, driven
by Playwright. For each set of inputs, merged here by the real CLI into its own folder: the page
loads with no console error, page error, dialog or network request (it is self-contained); it shows
one cell per record of the inputs (read here with the json module; no case repeats within one
environment in these inputs); a click on a cell (at most 40) shows that case's key and its exact
message (quotes, <, &, tab, newline, non-ASCII and "</script>" of the hand-written edge run
included); "only the cases that differ" leaves the rows whose outcome is not the same in every
input (docs/runs: one environment per input); an axis filter leaves the rows with that value; a
screenshot is saved as compatibility.png beside the page.
Usage: check_merged_html.py QLORA_COMPAT WORK_DIR DOCS_RUNS_DIR EDGE_RUN_DIR
       (CHROMIUM: the browser, default /usr/bin/chromium)
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from watched_page import open_watched


def runs_under(path):
    return [path] if (path / "records.jsonl").exists() else sorted(
        d for d in path.iterdir() if (d / "records.jsonl").exists())


def records_of(run):
    lines = (run / "records.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def key(case_id):
    return case_id.split("/", 1)[1] if "/" in case_id else case_id


def check(browser, cli, out, inputs, differing_rows):
    subprocess.run([cli, "merge", *map(str, inputs), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    records = [r for i in inputs for run in runs_under(i) for r in records_of(run)]
    by_key = {}  # a case key's records, one per environment it ran in
    for r in records:
        by_key.setdefault(key(r["case"]), []).append(r)
    page, problems = open_watched(browser, out / "compatibility.html", {"width": 1500, "height": 1000})
    cells = page.locator("button.cell")
    assert cells.count() == len(records), (out.name, cells.count(), len(records))
    for i in range(min(cells.count(), 40)):
        cells.nth(i).click()
        shown = page.inner_text("#details h3")
        assert shown in by_key, (out.name, i, shown)
        messages = [r.get("message", "") for r in by_key[shown]]
        has_message = page.locator("#details pre.message").count() > 0
        text = page.locator("#details pre.message").evaluate("e => e.textContent") if has_message else ""
        assert text in messages, (out.name, shown, text, messages)
        cells = page.locator("button.cell")  # the table is drawn again on each click
    rows = page.locator("table.merged tr")
    if differing_rows is not None:
        page.check("#only-differing")
        assert rows.count() - 1 == differing_rows, (out.name, rows.count() - 1, differing_rows)
        page.uncheck("#only-differing")
    select = page.locator("select[data-axis]").first
    if select.count():
        value = select.locator("option").nth(1).get_attribute("value")
        select.select_option(value)
        cells_in_column = page.locator("table.merged tr td.axis:first-child")
        assert cells_in_column.count() > 0
        assert all(t == value for t in cells_in_column.all_inner_texts()), (out.name, value)
        select.select_option("")
    page.screenshot(path=str(out / "compatibility.png"), full_page=False)
    page.close()
    assert not problems, (out.name, problems)
    print(f"{out}/compatibility.html: {len(records)} cells, clicks right, filters right, no errors")


def differing(runs):
    """Case keys whose outcome is not the same in every run (a missing record counts as one)."""
    outcomes = [{key(r["case"]): r["outcome"] for r in records_of(run)} for run in runs]
    keys = set().union(*outcomes)
    return sum(1 for k in keys if len({o.get(k, "-") for o in outcomes}) > 1)


if __name__ == "__main__":
    cli, work, docs_runs, edge = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    work.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                    args=["--no-sandbox"])
        try:
            check(browser, cli, work / "docs", [docs_runs], differing(runs_under(docs_runs)))
            check(browser, cli, work / "edge", [edge], None)
        finally:
            browser.close()
