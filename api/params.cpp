// Parsing and range checks of the small request bodies and query parameters that are not a device.
#include "api/params.hpp"

#include <fmt/format.h>

#include <charconv>

namespace qshim::api {

namespace {

const std::string range_reason =
    fmt::format("must be a whole number of seconds from 0 to {}", max_timeout_seconds);

// The body as a JSON object, or nullopt with the 400 saying why in `error`.
std::optional<Json> object_body(std::string_view body, const char* example,
                                std::optional<Response>& error) {
    auto doc = Json::parse(body, nullptr, false);
    if (doc.is_discarded()) {
        error =
            error_response(make_error(Errc::invalid_spec, "the request body is not valid JSON"));
        return std::nullopt;
    }
    if (!doc.is_object()) {
        error = field_error("", std::string("the body must be a JSON object such as ") + example);
        return std::nullopt;
    }
    return doc;
}

}  // namespace

Timeout timeout_param(const Route& route) {
    Timeout t;
    auto it = route.query.find("timeoutSeconds");
    if (it == route.query.end()) return t;
    const std::string& text = it->second;
    unsigned seconds = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
        seconds > max_timeout_seconds) {
        t.error = field_error("timeoutSeconds", range_reason);
        return t;
    }
    t.value = std::chrono::seconds(seconds);
    return t;
}

Grace shutdown_body(std::string_view body) {
    Grace g;
    if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
        return g;  // no body: spec default
    auto doc = object_body(body, R"({"timeoutSeconds": 10})", g.error);
    if (!doc) return g;
    for (const auto& [key, value] : doc->items()) {
        if (key != "timeoutSeconds") {
            g.error = field_error(key, "unknown field (the body takes only timeoutSeconds)");
            return g;
        }
        if (!value.is_number_unsigned() || value.get<unsigned long long>() > max_timeout_seconds) {
            g.error = field_error(key, range_reason);
            return g;
        }
        g.value = std::chrono::seconds(value.get<unsigned long long>());
    }
    return g;
}

Migration migrate_body(std::string_view body) {
    Migration m;
    auto doc = object_body(body, R"({"uri": "unix:PATH"})", m.error);
    if (!doc) return m;
    // A whole number in [lo, hi], or the 400 naming the field.
    auto whole = [&m](const std::string& key, const Json& v, uint64_t lo,
                      uint64_t hi) -> std::optional<uint64_t> {
        if (!v.is_number_unsigned() || v.get<uint64_t>() < lo || v.get<uint64_t>() > hi) {
            m.error = field_error(key, fmt::format("must be a whole number from {} to {}", lo, hi));
            return std::nullopt;
        }
        return v.get<uint64_t>();
    };
    auto flag = [&m](const std::string& key, const Json& v) -> std::optional<bool> {
        if (!v.is_boolean()) {
            m.error = field_error(key, "must be true or false");
            return std::nullopt;
        }
        return v.get<bool>();
    };
    MigrationRequest& r = m.value;
    for (const auto& [key, value] : doc->items()) {
        if (key == "uri") {
            if (!value.is_string()) {
                m.error = field_error(key, "must be a string: unix:PATH or tcp:HOST:PORT");
                return m;
            }
            r.uri = value.get<std::string>();
        } else if (key == "downtimeLimitMs") {
            auto v = whole(key, value, 1, 60'000);
            if (!v) return m;
            r.downtime_limit = std::chrono::milliseconds(*v);
        } else if (key == "maxBandwidthMiBps") {
            auto v = whole(key, value, 0, 1'000'000);
            if (!v) return m;
            r.max_bandwidth_mibps = *v;
        } else if (key == "multifdChannels") {
            auto v = whole(key, value, 0, 64);
            if (!v) return m;
            r.multifd_channels = static_cast<unsigned>(*v);
        } else if (key == "autoConverge") {
            auto v = flag(key, value);
            if (!v) return m;
            r.auto_converge = *v;
        } else if (key == "postcopy") {
            auto v = flag(key, value);
            if (!v) return m;
            r.postcopy = *v;
        } else if (key == "completionTimeoutSeconds") {
            auto v = whole(key, value, 0, 86'400);
            if (!v) return m;
            r.completion_timeout = std::chrono::seconds(*v);
        } else if (key == "tlsDir" || key == "tlsHostname") {
            if (!value.is_string() || value.get<std::string>().empty()) {
                m.error = field_error(key, "must be a non-empty string");
                return m;
            }
            (key == "tlsDir" ? r.tls_dir : r.tls_hostname) = value.get<std::string>();
        } else if (key == "progressTimeoutSeconds") {
            auto v = whole(key, value, 1, 86'400);
            if (!v) return m;
            r.progress_timeout = std::chrono::seconds(*v);
        } else {
            m.error = field_error(key, "unknown field (see docs/api.md, POST /v1/vm/migrate)");
            return m;
        }
    }
    if (r.uri.empty()) m.error = field_error("uri", "is required: unix:PATH or tcp:HOST:PORT");
    return m;
}

Media media_body(std::string_view body) {
    Media m;
    const char* example = R"({"path": "/images/disc.iso", "format": "raw"} or {"eject": true})";
    auto doc = object_body(body, example, m.error);
    if (!doc) return m;
    bool eject = false, has_path = false, has_format = false;
    for (const auto& [key, value] : doc->items()) {
        if (key == "path") {
            if (!value.is_string() || value.get<std::string>().empty() ||
                value.get<std::string>().find('\0') != std::string::npos) {
                m.error = field_error(key, "must be the image's path: a non-empty string");
                return m;
            }
            m.value.path = value.get<std::string>();
            has_path = true;
        } else if (key == "format") {
            if (value == "raw" || value == "qcow2") {
                m.value.format = value == "raw" ? spec::DiskFormat::raw : spec::DiskFormat::qcow2;
                has_format = true;
            } else {
                m.error = field_error(key, "must be one of raw, qcow2 (never probed)");
                return m;
            }
        } else if (key == "eject" || key == "force") {
            if (!value.is_boolean()) {
                m.error = field_error(key, "must be true or false");
                return m;
            }
            (key == "eject" ? eject : m.value.force) = value.get<bool>();
        } else {
            m.error = field_error(key, "unknown field (the body takes path, format, eject, force)");
            return m;
        }
    }
    if (eject && (has_path || has_format))
        m.error = field_error("eject", "either eject, or a path and format to insert: not both");
    else if (!eject && !has_path)
        m.error = field_error("path", std::string("required, unless eject is true: ") + example);
    else if (has_path && !has_format)
        m.error = field_error("format", "required with path: raw or qcow2 (never probed)");
    return m;
}

}  // namespace qshim::api
