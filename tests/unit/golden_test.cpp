// Golden files: committed topology and argv for a corpus of specs. A difference is a guest-ABI
// (or command-line) change and fails; QSHIM_UPDATE_GOLDEN=1 rewrites them after a deliberate
// change.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <qshim/launcher.hpp>
#include <qshim/topology.hpp>
#include <sstream>

#include "golden_file.hpp"

using namespace qshim;
namespace fs = std::filesystem;

namespace {

// A difference is a guest-ABI (or command-line) change.
void check_golden(const fs::path& file, const std::string& actual) {
    test::check_golden(file, actual,
                       "if the change is deliberate, it changes guest ABI: see docs/topology.md "
                       "first");
}

}  // namespace

TEST_CASE("golden topologies and command lines are unchanged") {
    fs::path dir = fs::path(QSHIM_SOURCE_ROOT) / "tests" / "golden";
    std::vector<fs::path> specs;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".yaml" &&
            e.path().string().find(".topology.") == std::string::npos)
            specs.push_back(e.path());
    std::sort(specs.begin(), specs.end());
    REQUIRE(specs.size() >= 5);
    for (const auto& path : specs) {
        SECTION(path.filename().string()) {
            // Golden specs use absolute paths so the argv does not depend on the checkout location.
            auto s = spec::load_spec(path.string());
            REQUIRE(s.ok());
            auto t = topology::plan(*s);
            REQUIRE(t.ok());
            check_golden(fs::path(path).replace_extension(".topology.json"),
                         topology::to_json(*t).value());
            launcher::CommandOptions options;
            options.qmp_fd = 3;
            options.paused = true;
            options.state_dir = "/var/lib/qshim/state";  // the default is next to the spec
            auto command = launcher::build_command(*s, *t, options);
            REQUIRE(command.ok());
            const auto& argv = command->argv;
            std::string joined;
            for (const auto& a : argv) joined += a + "\n";
            check_golden(fs::path(path).replace_extension(".argv.txt"), joined);
        }
    }
}
