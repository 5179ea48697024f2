// "Did you mean" for names a user typed: the closest of the names a field accepts. Kept apart
// from the JSON reader because any user-facing name (a flag's value, a preset) can use it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace magi {

// Levenshtein distance: insertions, deletions and substitutions of one byte each cost 1.
size_t edit_distance(std::string_view a, std::string_view b);

// "; did you mean \"x\"?" for the candidate closest to `word` when it is within
// max(2, word.size() / 3) edits, else "". Words longer than 64 bytes get no suggestion.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace magi
