// The style sheet and the script report.html inlines (html_assets.cc; private to reports/).
#pragma once

namespace qlc::reports {
extern const char* const kReportHtmlCss;
// Reads the JSON in <script id="report-data">, {"axis_order": [...], "report": report.json's
// document}, and builds the page: summary, axis filters, heat-map, details on click, charts.
extern const char* const kReportHtmlJs;
}  // namespace qlc::reports
