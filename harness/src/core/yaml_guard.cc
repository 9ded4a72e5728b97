#include "yaml_guard.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <sstream>
#include <string>

namespace qlc::harness::yaml_support {

namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

struct OutOfEvents {};

// Counts the parser's events, remembering the last position, and stops the parse past a budget.
class EventBudget : public YAML::EventHandler {
 public:
  explicit EventBudget(size_t budget) : left_(budget) {}
  void OnDocumentStart(const YAML::Mark& m) override { tick(m); }
  void OnDocumentEnd() override { tick(last_); }
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { tick(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { tick(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    tick(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    tick(m);
  }
  void OnSequenceEnd() override { tick(last_); }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    tick(m);
  }
  void OnMapEnd() override { tick(last_); }
  const YAML::Mark& last() const { return last_; }

 private:
  void tick(const YAML::Mark& m) {
    last_ = m;
    if (left_-- == 0) throw OutOfEvents();
  }
  size_t left_;
  YAML::Mark last_;
};

}  // namespace

bool yaml_reader_finishes(const std::string& text, TextPosition* where) {
  std::istringstream in(text);
  EventBudget budget(4 * text.size() + 64);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(budget)) {
    }
  } catch (const OutOfEvents&) {
    if (where) *where = TextPosition{std::max(0, budget.last().line), std::max(0, budget.last().column)};
    return false;
  } catch (const YAML::Exception&) {
  }
  return true;
}

std::optional<TextPosition> find_control_character(const std::string& text) {
  TextPosition at;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return at;
    if (c == '\n') {
      ++at.line;
      at.column = 0;
    } else {
      ++at.column;
    }
  }
  return std::nullopt;
}

std::optional<TextPosition> find_block_flow_entry(const std::string& text) {
  int flow_depth = 0;
  char quote = 0;                // the quote of a quoted scalar open across lines, else 0
  int block_scalar_parent = -1;  // the indentation a block scalar's content must exceed
  int line_no = 0;
  // Just after a quoted scalar closed outside [ ] / { }, or after a tag or anchor there: where the
  // reader also loops on a ',' ("'a'&b,c").
  bool after_quoted = false;
  bool after_props = false;
  for (size_t start = 0; start <= text.size(); ++line_no) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    int indent = 0;
    while (indent < static_cast<int>(line.size()) && line[indent] == ' ') ++indent;
    if (block_scalar_parent >= 0) {
      const bool empty = line.find_first_not_of(" \t\r") == std::string::npos;
      if (empty || indent > block_scalar_parent) continue;  // the scalar's content
      block_scalar_parent = -1;
    }
    bool node_start = quote == 0;  // a new line outside a quoted scalar may start a node
    char previous = 0;             // the last non-blank character outside scalars
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quote == '"') {
        if (c == '\\') ++i;
        else if (c == '"') quote = 0, after_quoted = flow_depth == 0;
        continue;
      }
      if (quote == '\'') {
        if (c == '\'' && i + 1 < line.size() && line[i + 1] == '\'') ++i;
        else if (c == '\'') quote = 0, after_quoted = flow_depth == 0;
        continue;
      }
      if (blank(c)) continue;
      if (c == '#' && (i == 0 || blank(line[i - 1]))) break;  // a comment
      const bool token_end = i + 1 >= line.size() || blank(line[i + 1]);
      // Where a node may start: the line's start or after "-", "?", ":" indicators, "---", a tag
      // or an anchor (node_start); after "key: "; inside [ ] / { } after "[", "{", ",", ":".
      const bool value_start = flow_depth == 0 && previous == ':' && blank(line[i - 1]);
      const bool in_flow_start = flow_depth > 0 && (previous == '[' || previous == '{' ||
                                                    previous == ',' || previous == ':');
      const bool at_node = node_start || value_start || in_flow_start;
      // The loop needs a ',' where a line's node starts (elsewhere yaml-cpp reports an error); in
      // a flow collection too, when the line is indented less than where it opened. A line may
      // not begin with ',' at all, then: the simple rule, and the one the message can state.
      if (c == ',' && (node_start || (flow_depth == 0 && (after_quoted || after_props)))) {
        return TextPosition{line_no, static_cast<int>(i)};
      }
      if (node_start && (c == '-' || c == '?' || c == ':') && token_end) continue;
      if (node_start && i == 0 && line.compare(0, 3, "---") == 0 &&
          (line.size() == 3 || blank(line[3]))) {
        i += 2;
        continue;
      }
      if ((at_node || after_quoted) && (c == '!' || c == '&')) {  // a tag or an anchor
        // The reader ends the token at a flow indicator too ("!a,b" is "!a" then ','), except
        // inside a verbatim tag's < >.
        const bool verbatim = c == '!' && i + 1 < line.size() && line[i + 1] == '<';
        while (i + 1 < line.size() && !blank(line[i + 1]) &&
               (verbatim || std::string(",[]{}").find(line[i + 1]) == std::string::npos)) {
          ++i;
        }
        after_props = flow_depth == 0;
        continue;
      }
      if (at_node && (c == '"' || c == '\'')) {
        quote = c;
      } else if (at_node && (c == '[' || c == '{')) {
        ++flow_depth;
      } else if ((c == ']' || c == '}') && flow_depth > 0) {
        --flow_depth;
      } else if (at_node && flow_depth == 0 && (c == '|' || c == '>')) {
        block_scalar_parent = indent;
        break;  // the rest of the line is the scalar's header
      }
      node_start = after_quoted = after_props = false;
      previous = c;
    }
  }
  return std::nullopt;
}

}  // namespace qlc::harness::yaml_support
