// dump_json, json_to_yaml: one writer for every JSON and YAML text qshim emits.
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

Error not_utf8(std::string_view what, const char* detail) {
    return make_error(Errc::invalid_spec, std::string("a value is not valid UTF-8: ") + detail,
                      "writing " + std::string(what));
}

}  // namespace

Result<std::string> dump_json(const nlohmann::ordered_json& value, int indent,
                              std::string_view what) {
    try {
        return value.dump(indent);
    } catch (const nlohmann::json::exception& e) {
        return not_utf8(what, e.what());
    }
}

Result<std::string> json_to_yaml(const nlohmann::ordered_json& value, std::string_view what) {
    // yaml-cpp would write invalid UTF-8 as a truncated document and only flag it in good():
    // nlohmann's check is the same for both formats and says which byte.
    if (auto checked = dump_json(value, -1, what); !checked) return std::move(checked).error();
    YAML::Emitter out;
    emit(out, value);
    if (!out.good()) return not_utf8(what, out.GetLastError().c_str());
    return std::string(out.c_str()) + "\n";
}

std::string dump_lossy(const nlohmann::json& value, int indent) {
    return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string dump_lossy(const nlohmann::ordered_json& value, int indent) {
    return value.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace qshim::detail
