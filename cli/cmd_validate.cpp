// qshim validate: check a spec and report every problem.
#include <fmt/format.h>

#include "cli/common.hpp"

namespace qshim::cli {

namespace {

constexpr const char* help = R"(Usage: qshim validate [--format yaml|json] SPEC

Check a VM spec without starting anything. Every problem is reported, one per
line, as FILE:LINE:COL: field.path: reason, for example:

  vm.yaml:12:11: disks[1].format: must be one of raw, qcow2

Unknown fields are errors, so a misspelt field is never silently ignored.
The spec is also laid out (the PCI topology is planned), so a spec that
validates also fits the machine. Files the spec names are not opened (a spec
may be validated on another host than the one that runs it), except
cloudInit's userDataFile, metaDataFile and networkConfigFile: their text is
part of the spec, read and checked now.

Options:
  --format yaml|json   read SPEC as this format (default: by extension, then
                       by content)
  --volume-root KIND=DIR
                       for a KubeVirt manifest: where its volumes are
                       (qshim convert --help), once per KIND
  -h, --help           show this help

Exit status: 0 valid, 2 invalid or unreadable.
See docs/spec.md for every field.
)";

}  // namespace

int cmd_validate(const std::vector<std::string>& argv) {
    if (wants_help(argv)) {
        fmt::print("{}", help);
        return exit_ok;
    }
    Args args(argv, {"--format", volume_root_option}, {});
    if (!args.ok()) return usage_error("validate", args.error());
    if (args.positional().size() != 1)
        return usage_error("validate", "expected exactly one SPEC file");
    auto loaded_options = load_options("validate", args);
    if (!loaded_options) return exit_invalid;
    spec::LoadOptions options = *loaded_options;
    if (auto f = args.get("--format")) {
        if (*f == "yaml")
            options.format = spec::Format::yaml;
        else if (*f == "json")
            options.format = spec::Format::json;
        else
            return usage_error("validate", "--format must be yaml or json");
    }
    const std::string& path = args.positional()[0];
    auto loaded = load_or_report(path, options);
    if (!loaded) return exit_invalid;
    auto topo = topology::plan(*loaded);
    if (!topo) {
        print_error(topo.error());
        return exit_invalid;
    }
    fmt::print("{}: valid ({} disks, {} interfaces, {} hotplug ports)\n", path,
               loaded->disks.size(), loaded->interfaces.size(), topo->hotplug_ports.size());
    return exit_ok;
}

}  // namespace qshim::cli
