// Committed expected outputs ("golden files") for the unit tests, and reading files back.
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace qshim::test {

inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// `actual` must equal the golden `file`. QSHIM_UPDATE_GOLDEN=1 rewrites it instead, after a
// deliberate change; `when_deliberate` says what such a change means and where it is documented.
inline void check_golden(const std::filesystem::path& file, const std::string& actual,
                         const char* when_deliberate) {
    if (std::getenv("QSHIM_UPDATE_GOLDEN")) {
        std::ofstream(file, std::ios::binary) << actual;
        return;
    }
    INFO("golden file " << file.string() << " differs; " << when_deliberate
                        << ", rewrite it with QSHIM_UPDATE_GOLDEN=1");
    REQUIRE(std::filesystem::exists(file));
    CHECK(read_file(file) == actual);
}

}  // namespace qshim::test
