// Parsing and range checks of timeoutSeconds, in the query of a DELETE or the body of a shutdown.
#include "api/params.hpp"

#include <fmt/format.h>

#include <charconv>

namespace qshim::api {

namespace {

const std::string range_reason =
    fmt::format("must be a whole number of seconds from 0 to {}", max_timeout_seconds);

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
    auto doc = Json::parse(body, nullptr, false);
    if (doc.is_discarded()) {
        g.error =
            error_response(make_error(Errc::invalid_spec, "the request body is not valid JSON"));
        return g;
    }
    if (!doc.is_object()) {
        g.error =
            field_error("", "the body must be a JSON object such as {\"timeoutSeconds\": 10}");
        return g;
    }
    for (const auto& [key, value] : doc.items()) {
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

}  // namespace qshim::api
