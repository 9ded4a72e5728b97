// Reports of a run: one writer per format behind one small interface, and a multiplexer that
// writes the formats asked for next to each other (nvbench's printers are the model). A report
// reads a run folder (records.jsonl + environment.json); it never runs a case.
#pragma once

#include <iosfwd>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlc/harness/record.h"

namespace qlc::reports {

// A run folder that cannot be read (missing, no records.jsonl, a malformed line: the message
// names the file and the line), or an unknown format.
class ReportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RunData {
  std::string dir;
  nlohmann::json environment;  // environment.json: {"id", "facts"}; null when the run has none
  std::vector<harness::Record> records;  // the last record of each case, in first-seen order
  bool truncated_tail = false;  // the run was cut short inside a record (that line is ignored)
  // Rule id -> its "detect" text (records carry why and fix, not detect); filled from a rules
  // file by the caller when it has one.
  std::map<std::string, std::string> detect_by_rule;
};

// Reads DIR/records.jsonl and DIR/environment.json (optional). Throws ReportError.
RunData load_run(const std::string& dir);

// A case's axes as (name, value) pairs in id order, read from the id itself (five-part core ids
// and full ids alike), so every writer follows the axes the records have. An id the case model
// cannot read gives the single pair {"case", id}.
std::vector<std::pair<std::string, std::string>> axes_of(const std::string& case_id);

// Every axis name any record of the run has, in order of first appearance (the matrix's order).
std::vector<std::string> axis_names(const RunData& run);

// Which axes form the Markdown table's rows and columns. "weights" stands for weights with "+dq"
// when double quantization is on (nf4+dq): the loading a user chooses.
struct TableLayout {
  std::vector<std::string> rows = {"weights", "compute_dtype"};
  std::vector<std::string> columns = {"param_dtype", "optimizer"};
};

class Writer {
 public:
  virtual ~Writer() = default;
  virtual std::string format() const = 0;     // "md", "csv", "json", "junit", "html"
  virtual std::string file_name() const = 0;  // "report.md", ...
  virtual void write(const RunData& run, std::ostream& out) const = 0;
};

std::unique_ptr<Writer> make_markdown_writer(TableLayout layout = {});
std::unique_ptr<Writer> make_csv_writer();
std::unique_ptr<Writer> make_json_writer();
std::unique_ptr<Writer> make_junit_writer();  // junit.xml, through pugixml
std::unique_ptr<Writer> make_html_writer();   // report.html, self-contained

// The writer of a format name; ReportError naming the valid ones otherwise.
std::unique_ptr<Writer> make_writer(const std::string& format);
const std::vector<std::string>& available_formats();  // md csv json junit html

// A comma-separated --format list: "all" stands for every format; empty items are ignored;
// each name is checked (ReportError naming the valid ones); duplicates are dropped.
std::vector<std::string> parse_formats(const std::string& comma_separated);

// Writes each format's file into out_dir (created when missing), each atomically (temp file +
// rename); returns the paths written, in the order asked.
std::vector<std::string> write_reports(const RunData& run, const std::vector<std::string>& formats,
                                       const std::string& out_dir);

}  // namespace qlc::reports
