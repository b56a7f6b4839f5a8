// The log: category levels and the replaceable sink.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <optional>
#include <qshim/log.hpp>
#include <string>

namespace qshim::log {

namespace {

struct Config {
    Level fallback = Level::info;
    std::map<std::string, Level, std::less<>> levels;
    Sink sink;
};

Config& config() {
    static Config c;
    return c;
}

std::optional<Level> parse_level(std::string_view s) {
    if (s == "error") return Level::error;
    if (s == "warn" || s == "warning") return Level::warn;
    if (s == "info") return Level::info;
    if (s == "debug") return Level::debug;
    return std::nullopt;
}

}  // namespace

const char* to_string(Level level) {
    switch (level) {
        case Level::error:
            return "error";
        case Level::warn:
            return "warning";
        case Level::info:
            return "info";
        case Level::debug:
            return "debug";
    }
    return "?";
}

void set_sink(Sink sink) { config().sink = std::move(sink); }

void configure(std::string_view spec) {
    Config& c = config();
    while (!spec.empty()) {
        auto comma = spec.find(',');
        std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        auto colon = item.find(':');
        auto level = parse_level(colon == std::string_view::npos ? item : item.substr(colon + 1));
        if (!level) continue;
        std::string_view category = colon == std::string_view::npos ? "*" : item.substr(0, colon);
        if (category == "*")
            c.fallback = *level;
        else
            c.levels[std::string(category)] = *level;
    }
}

bool enabled(std::string_view category, Level level) {
    const Config& c = config();
    auto it = c.levels.find(category);
    return level <= (it == c.levels.end() ? c.fallback : it->second);
}

void write(std::string_view category, Level level, std::string_view message) {
    if (!enabled(category, level)) return;
    if (config().sink) return config().sink(category, level, message);
    fmt::print(stderr, "qshim[{}] {}: {}\n", category, to_string(level), message);
}

}  // namespace qshim::log
