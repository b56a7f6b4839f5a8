// Writing JSON values as text (JSON or block YAML), refusing values that are not valid UTF-8.
#pragma once

#include <nlohmann/json.hpp>
#include <qshim/error.hpp>
#include <string>

namespace qshim::detail {

// The value as JSON text (indent < 0: one line). A string that is not valid UTF-8 (possible in
// a spec or topology built in code, never in one loaded from a file) is an Errc::invalid_spec
// naming `what`, not an exception.
Result<std::string> dump_json(const nlohmann::ordered_json& value, int indent,
                              std::string_view what);

// The value as block YAML: strings double-quoted, numbers and booleans plain. Same errors.
Result<std::string> json_to_yaml(const nlohmann::ordered_json& value, std::string_view what);

// For text that must be written whatever it holds (log lines, error bodies, events): invalid
// UTF-8 becomes U+FFFD instead of an exception.
std::string dump_lossy(const nlohmann::json& value, int indent = -1);
std::string dump_lossy(const nlohmann::ordered_json& value, int indent = -1);

}  // namespace qshim::detail
