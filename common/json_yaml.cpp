// json_to_yaml: one emitter for every YAML qshim writes, so spec and topology YAML agree.
#include "common/json_yaml.hpp"

#include <yaml-cpp/emitter.h>

namespace qshim::detail {

namespace {

void emit(YAML::Emitter& out, const nlohmann::ordered_json& j) {
    if (j.is_object()) {
        out << YAML::BeginMap;
        for (const auto& [k, v] : j.items()) {
            out << YAML::Key << k << YAML::Value;
            emit(out, v);
        }
        out << YAML::EndMap;
    } else if (j.is_array()) {
        out << YAML::BeginSeq;
        for (const auto& v : j) emit(out, v);
        out << YAML::EndSeq;
    } else if (j.is_string()) {
        // Always quoted: a name such as "true" or a serial such as "0123" stays a string.
        out << YAML::DoubleQuoted << j.get<std::string>();
    } else if (j.is_boolean()) {
        out << j.get<bool>();
    } else {
        out << j.dump();
    }
}

}  // namespace

std::string json_to_yaml(const nlohmann::ordered_json& value) {
    YAML::Emitter out;
    emit(out, value);
    return std::string(out.c_str()) + "\n";
}

}  // namespace qshim::detail
