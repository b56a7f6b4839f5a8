// Typed field readers over the Node tree, with "unknown field, did you mean" reporting.
#include "spec/decoder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace qshim::spec::detail {

namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t up = row[j];
            size_t sub = diag + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, sub});
            diag = up;
        }
    }
    return row[b.size()];
}

const char* kind_name(Node::Kind k) {
    switch (k) {
        case Node::Kind::null:
            return "null";
        case Node::Kind::scalar:
            return "a scalar";
        case Node::Kind::sequence:
            return "a list";
        case Node::Kind::map:
            return "a map";
    }
    return "?";
}

std::string comma_list(const std::vector<std::string_view>& names) {
    std::string out;
    for (size_t i = 0; i < names.size(); ++i) {
        if (i) out += ", ";
        out += names[i];
    }
    return out;
}

// A YAML 1.2 core-schema number: [-+]?(.D+|D+(.D*)?)([eE][-+]?D+)?, 0xH+ or 0oO+. Written by
// hand because libstdc++'s std::regex recurses once per character and overflows the stack on a
// long scalar.
bool is_yaml_number(std::string_view s) {
    auto digits = [&s](size_t& i, auto is_digit) {
        size_t start = i;
        while (i < s.size() && is_digit(static_cast<unsigned char>(s[i]))) ++i;
        return i - start;
    };
    auto dec = [](unsigned char c) { return c >= '0' && c <= '9'; };
    auto hex = [](unsigned char c) { return std::isxdigit(c) != 0; };
    auto oct = [](unsigned char c) { return c >= '0' && c <= '7'; };
    size_t i = 2;
    if (s.starts_with("0x")) return digits(i, hex) > 0 && i == s.size();
    if (s.starts_with("0o")) return digits(i, oct) > 0 && i == s.size();
    i = 0;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t mantissa = digits(i, dec);
    if (i < s.size() && s[i] == '.') {
        ++i;
        mantissa += digits(i, dec);
    }
    if (mantissa == 0) return false;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
        if (digits(i, dec) == 0) return false;
    }
    return i == s.size();
}

}  // namespace

bool is_plain_non_string(const Node& n) {
    if (n.kind != Node::Kind::scalar) return true;
    if (n.quoted) return false;
    static constexpr std::string_view literals[] = {"true",  "false", "True", "False", "TRUE",
                                                    "FALSE", "null",  "Null", "NULL",  "~"};
    return is_yaml_number(n.value) ||
           std::find(std::begin(literals), std::end(literals), n.value) != std::end(literals);
}

std::optional<uint64_t> parse_uint(std::string_view text) {
    uint64_t v = 0;
    if (text.empty() || text.size() > 20) return std::nullopt;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
    return v;
}

bool expect_kind(Diagnostics& diags, const Node& node, Node::Kind kind, const std::string& path) {
    if (node.kind == kind) return true;
    diags.add(node, path, fmt::format("must be {}, not {}", kind_name(kind), kind_name(node.kind)));
    return false;
}

Fields::Fields(Diagnostics& diags, const Node& map, std::string path)
    : diags_(diags), map_(map), path_(std::move(path)) {}

std::string Fields::path_of(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const Node* Fields::get(std::string_view key) {
    known_.emplace_back(key);
    return map_.find(key);
}

bool Fields::string(std::string_view key, std::string& out) {
    const Node* n = get(key);
    if (!n) return false;
    if (n->kind != Node::Kind::scalar || is_plain_non_string(*n)) {
        diags_.add(*n, path_of(key),
                   n->kind == Node::Kind::scalar
                       ? fmt::format("must be a string; quote it (\"{}\") if '{}' is meant",
                                     n->value, n->value)
                       : fmt::format("must be a string, not {}", kind_name(n->kind)));
        return false;
    }
    out = n->value;
    return true;
}

bool Fields::uint(std::string_view key, unsigned& out, unsigned min, unsigned max) {
    const Node* n = get(key);
    if (!n) return false;
    auto v = n->kind == Node::Kind::scalar && !n->quoted ? parse_uint(n->value) : std::nullopt;
    if (!v) {
        diags_.add(*n, path_of(key), fmt::format("must be a whole number from {} to {}", min, max));
        return false;
    }
    if (*v < min || *v > max) {
        diags_.add(*n, path_of(key),
                   fmt::format("{} is out of range: must be from {} to {}", *v, min, max));
        return false;
    }
    out = static_cast<unsigned>(*v);
    return true;
}

bool Fields::boolean(std::string_view key, bool& out) {
    const Node* n = get(key);
    if (!n) return false;
    if (n->kind == Node::Kind::scalar && !n->quoted &&
        (n->value == "true" || n->value == "false")) {
        out = n->value == "true";
        return true;
    }
    diags_.add(*n, path_of(key), "must be true or false");
    return false;
}

bool Fields::choice_index(std::string_view key, std::vector<std::string_view> names,
                          size_t& index) {
    const Node* n = get(key);
    if (!n) return false;
    if (n->kind == Node::Kind::scalar) {
        auto it = std::find(names.begin(), names.end(), n->value);
        if (it != names.end()) {
            index = static_cast<size_t>(it - names.begin());
            return true;
        }
    }
    diags_.add(*n, path_of(key), "must be one of " + comma_list(names));
    return false;
}

void Fields::require(std::string_view key) {
    if (!map_.find(key)) diags_.add(map_, path_of(key), "is required");
}

void Fields::finish(std::string_view unread) {
    for (const auto& [key, value] : map_.entries) {
        if (std::find(known_.begin(), known_.end(), key.value) != known_.end()) continue;
        std::string reason(unread);
        const std::string* best = nullptr;
        size_t best_distance = 3;  // suggest only close matches: a typo, not a different field
        for (const auto& k : known_) {
            size_t d = edit_distance(key.value, k);
            if (d < best_distance) {
                best_distance = d;
                best = &k;
            }
        }
        if (best) reason += " (did you mean '" + *best + "'?)";
        diags_.add(key, path_of(key.value), reason);
    }
}

}  // namespace qshim::spec::detail
