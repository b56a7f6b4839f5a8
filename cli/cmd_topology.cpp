// qshim topology: print, resolve or compare the PCI topology of specs.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <qshim/fingerprint.hpp>

#include "cli/common.hpp"

namespace qshim::cli {

namespace {

constexpr const char* help = R"(Usage: qshim topology [--format json|yaml] SPEC
       qshim topology --resolve SPEC
       qshim topology --diff OLD NEW
       qshim topology --fingerprint [--format text|json] SPEC

Show where every device of a VM sits on its PCI topology, as the guest will see
it. The topology is a pure function of the spec and its topology version: the
same spec gives byte-identical output on any machine, forever, so a VM
regenerated from its spec keeps its guest ABI (disk and NIC addresses).

  SPEC              print the topology (JSON by default; see docs/topology.md)
  --resolve SPEC    print SPEC as YAML with every device's pciAddress pinned and
                    every MAC written out; planning it again gives the same
                    topology. Save it to freeze placements before editing.
  --diff OLD NEW    list every guest-visible change from OLD to NEW: devices
                    moved, removed, or with another model, serial or MAC.
                    Added devices are listed too but do not count as changes.
  --fingerprint SPEC
                    print the VM's guest ABI as facts, one per line, after its
                    digest: topology version, machine type, CPU model and shape,
                    memory size, SMBIOS uuid and serial, guest NUMA nodes, and
                    every controller's and device's address, model, serial and
                    MAC. Host-side settings
                    (paths, backends, pinning) are not part of it. Two qshim
                    compare it before a migration moves any RAM; equal digests
                    mean the same guest (docs/migration.md).

Options:
  --format json|yaml   output format for SPEC (default json); text or json
                       for --fingerprint (default text)
  --volume-root KIND=DIR
                       for a KubeVirt manifest: where its volumes are
                       (qshim convert --help), once per KIND
  -h, --help           show this help

Exit status: 0 success (for --diff: guest ABI unchanged), 1 --diff found
changes, 2 invalid spec or usage.
)";

int diff(const std::string& old_path, const std::string& new_path,
         const spec::LoadOptions& options) {
    auto before = plan_or_report(old_path, options);
    if (!before) return exit_invalid;
    auto after = plan_or_report(new_path, options);
    if (!after) return exit_invalid;
    bool breaks = false;
    for (const auto& change : topology::diff(before->topology, after->topology)) {
        fmt::print("{}\n", topology::to_string(change));
        breaks = breaks || change.breaks_abi();
    }
    if (!breaks) fmt::print("guest ABI unchanged\n");
    return breaks ? exit_changed : exit_ok;
}

int print_fingerprint(const std::string& path, const std::string& format,
                      const spec::LoadOptions& options) {
    auto planned = plan_or_report(path, options);
    if (!planned) return exit_invalid;
    auto fp = topology::fingerprint(planned->spec, planned->topology);
    if (format == "json") {
        nlohmann::ordered_json facts = nlohmann::ordered_json::object();
        for (const auto& [key, value] : fp.facts) facts[key] = value;
        nlohmann::ordered_json out = {{"digest", fp.digest}, {"facts", facts}};
        // Names come from a loaded spec, so they are UTF-8; replace anyway rather than throw.
        fmt::print("{}\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
        return exit_ok;
    }
    fmt::print("digest {}\n", fp.digest);
    for (const auto& [key, value] : fp.facts) fmt::print("{} {}\n", key, value);
    return exit_ok;
}

}  // namespace

int cmd_topology(const std::vector<std::string>& argv) {
    if (wants_help(argv)) {
        fmt::print("{}", help);
        return exit_ok;
    }
    Args args(argv, {"--format", volume_root_option}, {"--resolve", "--diff", "--fingerprint"});
    if (!args.ok()) return usage_error("topology", args.error());
    auto options = load_options("topology", args);
    if (!options) return exit_invalid;
    const auto& pos = args.positional();
    if (args.has("--resolve") + args.has("--diff") + args.has("--fingerprint") > 1)
        return usage_error("topology", "--resolve, --diff and --fingerprint exclude each other");
    if (args.has("--fingerprint")) {
        if (pos.size() != 1) return usage_error("topology", "expected exactly one SPEC file");
        std::string format = args.get("--format").value_or("text");
        if (format != "text" && format != "json")
            return usage_error("topology", "--format must be text or json with --fingerprint");
        return print_fingerprint(pos[0], format, *options);
    }
    if (args.has("--diff")) {
        if (pos.size() != 2) return usage_error("topology", "--diff takes two specs: OLD NEW");
        return diff(pos[0], pos[1], *options);
    }
    if (pos.size() != 1) return usage_error("topology", "expected exactly one SPEC file");
    std::string format = args.get("--format").value_or("json");
    if (format != "json" && format != "yaml")
        return usage_error("topology", "--format must be json or yaml");
    auto planned = plan_or_report(pos[0], *options);
    if (!planned) return exit_invalid;
    if (args.has("--resolve")) {
        if (args.has("--format")) return usage_error("topology", "--resolve always prints YAML");
        return print_or_report(spec::to_yaml(topology::resolve(planned->spec, planned->topology)));
    }
    return print_or_report(format == "json" ? topology::to_json(planned->topology)
                                            : topology::to_yaml(planned->topology));
}

}  // namespace qshim::cli
