// Helpers for unit tests that build specs from text.
#pragma once

#include <catch2/catch.hpp>
#include <qshim/spec.hpp>
#include <string>

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

}  // namespace qshim::test
