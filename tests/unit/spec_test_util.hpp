// Helpers for unit tests that build specs from text.
#pragma once

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace qshim::test {

// Parses YAML spec text that must be valid; fails the test with every diagnostic otherwise.
inline spec::VmSpec must_parse(const std::string& text,
                               const std::string& file = "/specs/vm.yaml") {
    auto r = spec::parse_spec(text, file);
    if (!r) {
        std::string all = r.error().what();
        for (const auto& d : r.error().diagnostics) all += "\n" + to_string(d);
        FAIL(all);
    }
    return std::move(r).value();
}

// Every diagnostic of spec text that must be rejected, as file:line:col: path: reason.
inline std::vector<std::string> problems(std::string_view text,
                                         const std::string& file = "vm.yaml") {
    auto r = spec::parse_spec(text, file);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_spec);
    std::vector<std::string> out;
    for (const auto& d : r.error().diagnostics) out.push_back(to_string(d));
    REQUIRE_FALSE(out.empty());
    return out;
}

// The single diagnostic of spec text with one mistake.
inline std::string problem(std::string_view text, const std::string& file = "vm.yaml") {
    auto all = problems(text, file);
    INFO(fmt::format("{}", fmt::join(all, "\n")));
    REQUIRE(all.size() == 1);
    return all[0];
}

}  // namespace qshim::test
