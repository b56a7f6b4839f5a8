// A fake root for code that reads /proc and /sys under an injectable root: files are written
// under a temporary folder by their absolute paths, and removed with it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <qshim/cgroups.hpp>
#include <stdexcept>
#include <string>

namespace qshim::test {

struct FakeRoot {
    std::filesystem::path path;
    FakeRoot() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "qshim-fakeroot-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp");
        path = tmpl;
    }
    ~FakeRoot() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    FakeRoot(const FakeRoot&) = delete;
    FakeRoot& operator=(const FakeRoot&) = delete;
    void write(const std::string& file, const std::string& text) const {
        std::filesystem::path p = path / std::filesystem::path(file).relative_path();
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p) << text << "\n";
    }
    cgroups::Roots roots() const { return {path.string()}; }
};

}  // namespace qshim::test
