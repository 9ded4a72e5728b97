// The style sheet and the script report.html inlines (html_assets.cc; private to reports/).
#pragma once

namespace qlc::reports {
extern const char* const kReportHtmlCss;
// The outcome colours and a DOM builder, written before either page's script.
extern const char* const kHtmlJsCommon;
// Reads the JSON in <script id="report-data">, {"axis_order": [...], "report": report.json's
// document}, and builds the page: summary, axis filters, heat-map, details on click, charts.
extern const char* const kReportHtmlJs;
// compatibility.html (merge): the rules added to kReportHtmlCss, and the script that reads the
// JSON in <script id="merged-data"> (merged_html.cc) and builds the page.
extern const char* const kMergedHtmlCss;
extern const char* const kMergedHtmlJs;
}  // namespace qlc::reports
