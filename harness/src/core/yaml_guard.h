// Checks of YAML text before yaml-cpp reads it, against the inputs that make yaml-cpp 0.7
// (Debian 12's) loop forever while allocating without end, found by fuzzing the matrix parser.
// Two name what they find, with its position: a control character, and a ',' where a line's node
// starts (", a"; "- a\n, b"; "--- , a"; "!tag,a"; a flow collection's line that begins with ','
// less indented than the collection). Outside flow collections YAML forbids that ',' anyway (no
// plain scalar starts with it); inside them a line that begins with ',' is valid YAML these files
// need not use: the comma goes at the end of the line before. The third, yaml_reader_finishes,
// stops any other such loop.
#pragma once

#include <optional>
#include <string>

namespace qlc::harness::yaml_support {

struct TextPosition {
  int line = 0;    // from 0, as yaml-cpp's marks
  int column = 0;  // from 0
};

// The first control character YAML does not allow in a stream (C0 but tab, LF and CR; DEL):
// yaml-cpp 0.7 loops on some of them too (a NUL before a ','). nullopt when there is none.
std::optional<TextPosition> find_control_character(const std::string& text);

// The first ',' where a line's node starts (at its start, or after "-", "?", ":", "---", a tag or
// an anchor), skipping comments, quoted scalars and block scalars (| and >); nullopt when none.
std::optional<TextPosition> find_block_flow_entry(const std::string& text);

// Whether yaml-cpp's parser comes to the end of `text`: it is run once over the text with an
// event handler that builds nothing and stops it after more events than any YAML of this size can
// have (4 per byte, plus 64). This catches every way of making yaml-cpp 0.7 loop (each loop emits
// events without end), including those the checks above do not name; `where` is the position of
// the last event before the stop. A syntax error counts as finishing: the real read reports it.
bool yaml_reader_finishes(const std::string& text, TextPosition* where);

}  // namespace qlc::harness::yaml_support
