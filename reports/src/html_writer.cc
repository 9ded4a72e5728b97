// report.html: one self-contained page per run (data, script and style inline; the
// Content-Security-Policy forbids every fetch, so it works offline and from a mail attachment).
// The data is report.json's document plus the axis order, embedded as JSON in a
// <script type="application/json">, every "<" written as \u003c so that no message can end the
// script element; html_assets.cc builds the page from it.
#include <ostream>

#include "document.h"
#include "html_assets.h"

namespace qlc::reports {

namespace {

class HtmlWriter : public Writer {
 public:
  std::string format() const override { return "html"; }
  std::string file_name() const override { return "report.html"; }

  void write(const RunData& run, std::ostream& out) const override {
    // Axis names in the matrix's order (report.json's objects are sorted by key).
    const std::vector<std::string> order = axis_names(run);
    out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
           "<link rel=\"icon\" href=\"data:,\">\n<title>qlora-compat report</title>\n<style>"
        << kReportHtmlCss << "</style>\n</head>\n<body>\n<div id=\"app\"><noscript>This report "
           "needs JavaScript; report.md and report.csv hold the same results.</noscript></div>\n"
           "<script id=\"report-data\" type=\"application/json\">";
    out << "{\"axis_order\": ";
    write_json(nlohmann::json(order), out, /*escape_lt=*/true);
    out << ",\n\"report\": ";
    write_report_document(run, out, /*escape_lt=*/true);
    out << "}";
    out << "</script>\n<script>" << kHtmlJsCommon << kReportHtmlJs << "</script>\n</body>\n</html>\n";
  }
};

}  // namespace

std::unique_ptr<Writer> make_html_writer() { return std::make_unique<HtmlWriter>(); }

}  // namespace qlc::reports
