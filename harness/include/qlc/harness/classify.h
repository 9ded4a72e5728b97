// Outcome classification of raw error messages: ONE ordered table of (pattern -> Outcome), so that
// every message the harness has learned to recognise is in one place, with the reason it means
// what it means. Messages that match nothing are our problem (harness_error), never guessed.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qlc/harness/outcome.h"

namespace qlc::harness {

struct MessagePattern {
  const char* text;  // a case-sensitive substring of the raw message
  Outcome outcome;
  const char* why;   // where the message comes from / what triggers it
};

// The table, in match order (the first pattern found in the message wins).
const std::vector<MessagePattern>& message_patterns();

// The outcome of the first pattern found in `message`, or nullopt when none matches.
std::optional<Outcome> classify_message(const std::string& message);

// The first `max_lines` non-empty lines of `message`, at most `max_chars` characters: what a record
// keeps (LibTorch appends C++ backtraces that say nothing to a reader of the report).
std::string first_lines(const std::string& message, int max_lines = 4, size_t max_chars = 800);

}  // namespace qlc::harness
