"""A page of a self-contained file opened in the browser with everything that must not happen
watched: console errors and warnings, page errors, dialogs, and any request but the file's own.
Shared by check_html.py and check_merged_html.py."""


def open_watched(browser, path, viewport):
    """Opens `path` (a file); returns the page and the list its problems are appended to."""
    page = browser.new_page(viewport=viewport)
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    url = path.resolve().as_uri()
    page.on("request", lambda r: problems.append(f"request: {r.url}") if r.url != url else None)
    page.goto(url)
    page.wait_for_selector("header h1")
    return page, problems
