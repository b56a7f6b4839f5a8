// Routing of control API requests: split, decode and match the target against the endpoint table.
#include "api/routes.hpp"

#include <array>
#include <vector>

namespace qshim::api {

namespace {

// "*" in a path matches one non-empty segment: the device name.
struct Pattern {
    std::string_view method;
    std::string_view path;
    Endpoint endpoint;
    std::string_view query_key;  // the one query parameter the endpoint takes, if any
};

constexpr std::array<Pattern, 16> patterns{{
    {"GET", "/v1/vm", Endpoint::vm, ""},
    {"GET", "/v1/vm/topology", Endpoint::topology, ""},
    {"GET", "/v1/vm/cpus", Endpoint::cpus, ""},
    {"POST", "/v1/vm/disks", Endpoint::disks, ""},
    {"DELETE", "/v1/vm/disks/*", Endpoint::disk, "timeoutSeconds"},
    {"POST", "/v1/vm/disks/*/media", Endpoint::media, ""},
    {"POST", "/v1/vm/interfaces", Endpoint::interfaces, ""},
    {"DELETE", "/v1/vm/interfaces/*", Endpoint::interface, "timeoutSeconds"},
    {"POST", "/v1/vm/pause", Endpoint::pause, ""},
    {"POST", "/v1/vm/resume", Endpoint::resume, ""},
    {"POST", "/v1/vm/shutdown", Endpoint::shutdown, ""},
    {"POST", "/v1/vm/migrate", Endpoint::migrate, ""},
    {"GET", "/v1/vm/migration", Endpoint::migration, ""},
    {"DELETE", "/v1/vm/migration", Endpoint::cancel_migration, ""},
    {"GET", "/v1/vm/console", Endpoint::console, ""},
    {"GET", "/v1/events", Endpoint::events, ""},
}};

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Splits "/a/b" into {"a", "b"} raw (still encoded); nullopt for an empty segment.
std::optional<std::vector<std::string_view>> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
    if (path == "/") return out;
    path.remove_prefix(1);  // the caller checked it starts with '/'
    for (;;) {
        size_t slash = path.find('/');
        std::string_view seg = path.substr(0, slash);
        if (seg.empty()) return std::nullopt;
        out.push_back(seg);
        if (slash == std::string_view::npos) return out;
        path.remove_prefix(slash + 1);
    }
}

std::vector<std::string_view> pattern_segments(std::string_view path) {
    return *split_path(path);  // the table has no empty segments
}

Route bad_request(std::string message, std::string field = {}) {
    Route r;
    r.outcome = Route::Outcome::bad_request;
    r.message = std::move(message);
    r.bad_field = std::move(field);
    return r;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '+' && plus_is_space) {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= text.size()) return std::nullopt;
            int hi = hex_value(text[i + 1]), lo = hex_value(text[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return std::nullopt;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<std::map<std::string, std::string>> parse_query(std::string_view query) {
    std::map<std::string, std::string> out;
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (pair.empty()) continue;  // "a=1&&b=2" and a trailing "&" are harmless
        size_t eq = pair.find('=');
        auto key = percent_decode(pair.substr(0, eq), true);
        auto value = percent_decode(
            eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
        if (!key || !value || key->empty()) return std::nullopt;
        if (!out.emplace(std::move(*key), std::move(*value)).second) return std::nullopt;
    }
    return out;
}

Route route(std::string_view method, std::string_view target) {
    if (size_t hash = target.find('#'); hash != std::string_view::npos)
        target = target.substr(0, hash);
    // Absolute form (a proxy-style client): drop scheme and authority.
    for (std::string_view scheme : {"http://", "HTTP://"}) {
        if (target.substr(0, scheme.size()) == scheme) {
            target.remove_prefix(scheme.size());
            size_t slash = target.find_first_of("/?");
            target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
            if (!target.empty() && target[0] == '?')
                return bad_request("the request target has no path");
        }
    }
    if (target.empty() || target[0] != '/')
        return bad_request("the request target must be a path such as /v1/vm");

    size_t qmark = target.find('?');
    std::string_view path = target.substr(0, qmark);
    std::string_view query_text =
        qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);

    Route r;
    r.message = "no such endpoint: " + std::string(path) + " (see docs/api.md)";
    auto raw = split_path(path);
    if (!raw) return r;  // an empty segment: not_found
    std::vector<std::string> segs;
    for (auto s : *raw) {
        auto decoded = percent_decode(s);
        if (!decoded) return bad_request("malformed percent-encoding in the path");
        segs.push_back(std::move(*decoded));
    }

    const Pattern* hit = nullptr;
    std::string allow;
    for (const auto& p : patterns) {
        auto want = pattern_segments(p.path);
        if (want.size() != segs.size()) continue;
        bool same = true;
        for (size_t i = 0; i < want.size() && same; ++i)
            same = want[i] == "*" || want[i] == segs[i];
        if (!same) continue;
        if (p.method == method) hit = &p;
        if (allow.find(p.method) == std::string::npos)
            allow += (allow.empty() ? "" : ", ") + std::string(p.method);
    }
    if (!hit) {
        if (allow.empty()) return r;
        r.outcome = Route::Outcome::method_not_allowed;
        r.allow = allow;
        r.message =
            std::string(method) + " is not allowed on " + std::string(path) + "; use " + allow;
        return r;
    }

    auto query = parse_query(query_text);
    if (!query)
        return bad_request("malformed query string (bad percent-encoding or a repeated key)");
    for (const auto& [key, value] : *query) {
        if (key != hit->query_key) {
            std::string takes = hit->query_key.empty()
                                    ? "takes no query parameters"
                                    : "takes only " + std::string(hit->query_key);
            return bad_request("unknown query parameter '" + key + "': this endpoint " + takes,
                               key);
        }
    }
    r.outcome = Route::Outcome::ok;
    r.endpoint = hit->endpoint;
    r.query = std::move(*query);
    r.message.clear();
    const auto want = pattern_segments(hit->path);
    for (size_t i = 0; i < want.size(); ++i)
        if (want[i] == "*") r.name = segs[i];
    return r;
}

}  // namespace qshim::api
