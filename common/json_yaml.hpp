// Writes a JSON value as block YAML: strings double-quoted, numbers and booleans plain.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace qshim::detail {

std::string json_to_yaml(const nlohmann::ordered_json& value);

}  // namespace qshim::detail
