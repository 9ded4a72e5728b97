// docs/compatibility.md and docs/compatibility.html are what `qlora-compat merge docs/runs --out
// docs` writes from the runs kept in docs/runs/ (README, "Reports"): regenerated here and compared
// byte for byte, so the pages never go stale. The run folders must be merge's own output too (named by environment), so that the
// command rewrites them unchanged instead of adding copies.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "qlc/reports/merge.h"

namespace qlc::reports {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRegenerate =
    "regenerate it from the repository root with\n"
    "    build/harness/qlora-compat merge docs/runs --out docs\n";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The first line where two texts differ, both sides, for the failure message.
std::string first_difference(const std::string& want, const std::string& got) {
  std::istringstream a(want), b(got);
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
    if (!ha && !hb) return "(no line differs: line endings?)";
    if (!ha || !hb || la != lb) {
      return "line " + std::to_string(line) + ":\n  checked in:  " + (hb ? lb : "(end of file)") +
             "\n  regenerated: " + (ha ? la : "(end of file)") + "\n";
    }
  }
}

TEST(DocsTable, CompatibilityPageMatchesTheRunsKeptInDocsRuns) {
  const fs::path docs = fs::path(QLC_SOURCE_DIR) / "docs";
  const auto merged = merge_runs(load_all_inputs({(docs / "runs").string()}));
  std::ostringstream page;
  write_merged_markdown(merged, page);
  const std::string checked_in = read_text(docs / "compatibility.md");
  EXPECT_TRUE(page.str() == checked_in)
      << "docs/compatibility.md differs from what docs/runs/ gives; " << kRegenerate
      << first_difference(page.str(), checked_in);

  // The two environments measurable here, CPU with the wheel's LibTorch 2.13 and Debian's 1.13;
  // no GPU column: no GPU run was ever added.
  ASSERT_EQ(merged.size(), 2u) << "expected the LibTorch 1.13 and 2.13 CPU runs in docs/runs";
  EXPECT_EQ(merged[0].key.fields.at("libtorch").get<std::string>().rfind("1.13", 0), 0u);
  EXPECT_EQ(merged[1].key.fields.at("libtorch").get<std::string>().rfind("2.13", 0), 0u);
  for (const auto& env : merged) EXPECT_EQ(env.key.fields.at("device"), "cpu") << env.key.label;

  // Rewriting docs/runs changes nothing: the same files under the same names.
  const fs::path tmp = fs::temp_directory_path() / ("qlc_docs_table_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  for (const std::string& path : write_merge(merged, tmp.string())) {
    const fs::path rel = fs::relative(path, tmp);
    if (rel == "compatibility.md") continue;
    EXPECT_TRUE(read_text(path) == read_text(docs / rel))
        << "docs/" << rel.string() << " is not what merge writes for it; " << kRegenerate;
  }
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace qlc::reports
