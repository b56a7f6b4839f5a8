// Shared CLI plumbing: error printing and spec loading.
#include "cli/common.hpp"

#include <fmt/format.h>

#include <cstdio>

namespace qshim::cli {

void print_error(const Error& error) {
    if (error.diagnostics.empty()) {
        fmt::print(stderr, "qshim: {}\n", error.what());
        return;
    }
    // Diagnostics alone, one per line, in the FILE:LINE:COL: path: reason form editors jump to.
    for (const auto& d : error.diagnostics) fmt::print(stderr, "{}\n", to_string(d));
    fmt::print(stderr, "qshim: {}\n", error.what());
}

int usage_error(const std::string& command, const std::string& message) {
    fmt::print(stderr, "qshim {}: {}\nTry 'qshim {} --help'.\n", command, message, command);
    return exit_invalid;
}

std::optional<spec::VmSpec> load_or_report(const std::string& path) {
    auto loaded = spec::load_spec(path);
    if (!loaded) {
        print_error(loaded.error());
        return std::nullopt;
    }
    return std::move(loaded).value();
}

std::optional<Planned> plan_or_report(const std::string& path) {
    auto spec = load_or_report(path);
    if (!spec) return std::nullopt;
    auto topo = topology::plan(*spec);
    if (!topo) {
        print_error(topo.error());
        return std::nullopt;
    }
    return Planned{std::move(*spec), std::move(topo).value()};
}

bool wants_help(const std::vector<std::string>& args) {
    for (const auto& a : args) {
        if (a == "--") return false;
        if (a == "-h" || a == "--help") return true;
    }
    return false;
}

int print_or_report(const Result<std::string>& text) {
    if (!text) {
        print_error(text.error());
        return exit_invalid;
    }
    fmt::print("{}", *text);
    return exit_ok;
}

}  // namespace qshim::cli
