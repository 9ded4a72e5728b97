"""junit.xml read by a second, independent XML parser (Python's xml.etree; the writer uses
pugixml) and checked against the run's records.jsonl, read here with the json module:

  one <testcase> per record, in order; name = case id; classname = the weight format (the id's
  second part, "-dq" read as "+dq"); time = wall_ms / 1000; <skipped> with the reason for a
  skipped case; <error> for harness_error and machine_fault; <failure> when the outcome is not the predicted one
  (or not ok, without a prediction), its text naming prediction, observation and rule; suite
  counts that add up; the outcome and axes as properties.

For the hand-written edge run (reports/tests/data/README.md) the expected counts are written
out: 7 cases, 2 failures, 1 error, 1 skipped, and its message comes back intact.
Usage: check_junit.py RUN_DIR...
"""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def read_records(path):
    records = []
    text = path.read_text(encoding="utf-8")
    for i, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # Only the last line of a run cut short may be unfinished.
            assert i == len(text.split("\n")) - 1, f"{path}:{i + 1}: malformed line"
    return records


def weight_format(case_id):
    parts = case_id.split("/")
    if len(parts) < 5:
        return "-"  # not a case id: no weights axis
    return parts[1].replace("-dq", "+dq")


def xml_text(s):
    # XML 1.0 cannot carry most control characters: the writer puts U+FFFD in their place.
    return "".join("\ufffd" if ord(c) < 0x20 and c not in "\t\n\r" else c for c in s)


def check(run_dir):
    run_dir = Path(run_dir)
    records = read_records(run_dir / "records.jsonl")
    root = ET.parse(run_dir / "junit.xml").getroot()
    assert root.tag == "testsuites", root.tag
    suites = root.findall("testsuite")
    assert len(suites) == 1, len(suites)
    cases = suites[0].findall("testcase")
    assert len(cases) == len(records), (len(cases), len(records))
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for tc, r in zip(cases, records):
        where = f"{run_dir.name}: {r['case']}"
        assert tc.get("name") == r["case"], where
        assert tc.get("classname") == weight_format(r["case"]), (where, tc.get("classname"))
        assert abs(float(tc.get("time")) - r["timings"]["wall_ms"] / 1000) < 0.0006, where
        props = {p.get("name"): p.get("value") for p in tc.find("properties")}
        assert props["outcome"] == r["outcome"], where
        if weight_format(r["case"]) != "-":
            assert props["axis.weights"] + ("+dq" if props["axis.double_quant"] == "true" else "") \
                == weight_format(r["case"]), where
        predicted = r.get("prediction", {}).get("outcome")
        children = [c.tag for c in tc if c.tag != "properties"]
        if r["outcome"] == "skipped":
            expect = "skipped"
            assert tc.find("skipped").get("message") == xml_text(r["skip_reason"]), where
        elif r["outcome"] in ("harness_error", "machine_fault"):
            expect = "error"
        elif r["outcome"] != (predicted or "ok"):
            expect = "failure"
            text = tc.find("failure").text
            assert f"predicted: {predicted}" in text if predicted else "predicted: nothing" in text, where
            assert f"observed: {r['outcome']}" in text, where
            if predicted:
                assert f"(rule {r['prediction']['rule']})" in text, where
            assert xml_text(r["message"]) in text, where
        else:
            expect = None
        if expect:
            counts[{"skipped": "skipped", "error": "errors", "failure": "failures"}[expect]] += 1
        assert expect in children if expect else not {"skipped", "error", "failure"} & set(children), \
            (where, children)
    for node in (root, suites[0]):
        assert int(node.get("tests")) == len(records)
        for k, v in counts.items():
            assert int(node.get(k)) == v, (run_dir.name, k, node.get(k), v)
    if run_dir.name == "edge":
        assert (len(records), counts["failures"], counts["errors"], counts["skipped"]) == (7, 2, 1, 1)
        failure = cases[1].find("failure")
        assert "He said \"no\", then <b>&amp;</b>\tafter a tab, a comma, non-ASCII: é ü 日本語 🚀\n" \
               "line 2 </script><script>alert(1)</script> <!-- \ufffd[31mred\ufffd[0m" in failure.text
    print(f"{run_dir}/junit.xml: {len(records)} testcases, {counts}")


if __name__ == "__main__":
    for d in sys.argv[1:]:
        check(d)
