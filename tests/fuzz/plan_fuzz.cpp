// libFuzzer target: every spec that loads, through the planner, resolve and the argv builder.
//
// Input is spec text (YAML, or JSON when it starts with '{'); inputs that do not load are
// spec-fuzz's business and end here. Beyond "no crash" it checks the topology contract
// (docs/topology.md):
// - plan fails only with Errc::topology; planning twice gives byte-identical JSON;
// - every function outside a controller has its own address, controller buses are unique and
//   below 256;
// - resolve pins every virtio disk and every interface; its YAML loads back, and planning it gives
//   the same topology JSON (no diff at all) and the same command line; resolving again changes
//   nothing;
// - build_command succeeds, or refuses with invalid_spec for a reason it documents; every
//   -device/-blockdev/-netdev/-object argument is a JSON object; inherited fds are numbered from
//   3 without gaps and each is named by a -netdev.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <qshim/launcher.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <set>
#include <string>
#include <string_view>
#include <utility>

namespace {

using namespace qshim;

const std::string file = "/fuzz/vm.spec";

[[noreturn]] void broken(const char* what, std::string_view detail) {
    std::fprintf(stderr, "plan-fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

// The renderers return Result<std::string>: a spec loaded from text is valid UTF-8, so they
// cannot fail here.
std::string text(Result<std::string> rendered, const char* what) {
    if (!rendered) broken(what, rendered.error().what());
    return std::move(rendered).value();
}

std::string json_of(const topology::Topology& t) {
    return text(topology::to_json(t), "topology::to_json failed");
}
std::string yaml_of(const spec::VmSpec& s) { return text(spec::to_yaml(s), "to_yaml failed"); }

void check_layout(const topology::Topology& t, const std::string& json) {
    std::set<std::string> addresses;
    for (const auto& d : t.devices)
        if (!d.unit && !addresses.insert(spec::to_string(d.address)).second)
            broken("two functions at one address", json);
    std::set<unsigned> buses;
    for (const auto& c : t.controllers) {
        if (c.bus >= 256) broken("a bus number over 255", json);
        if (!buses.insert(c.bus).second) broken("two controllers with one bus number", json);
        if (!addresses.insert(spec::to_string(c.address)).second)
            broken("a controller at a device's or another controller's address", json);
    }
}

// The command line, or nullopt when build_command refused for a documented reason.
std::optional<launcher::CommandLine> command_of(const spec::VmSpec& s,
                                                const topology::Topology& t) {
    auto command = launcher::build_command(s, t);
    if (!command) {
        const Error& e = command.error();
        if (e.code != Errc::invalid_spec || e.message.find("needs KVM") == std::string::npos)
            broken("build_command failed for an undocumented reason", e.what());
        return std::nullopt;
    }
    const std::vector<std::string>& argv = command->argv;
    static const std::set<std::string> json_options = {"-device", "-blockdev", "-netdev",
                                                       "-object"};
    std::string netdevs;
    for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
        if (!json_options.count(argv[i])) continue;
        auto j = nlohmann::json::parse(argv[i + 1], nullptr, false);
        if (j.is_discarded() || !j.is_object())
            broken("an option argument that is not a JSON object", argv[i + 1]);
        if (argv[i] == "-netdev") netdevs += argv[i + 1] + "\n";
    }
    // The fd plan: numbered from 3 without gaps, each number named by a -netdev.
    for (std::size_t i = 0; i < command->fds.size(); ++i) {
        const launcher::InheritedFd& fd = command->fds[i];
        if (fd.target != 3 + static_cast<int>(i) || fd.source < 0 || fd.purpose.empty())
            broken("an fd plan with a gap, a bad source or no purpose", netdevs);
        if (netdevs.find("\"fd\":\"" + std::to_string(fd.target) + "\"") == std::string::npos)
            broken("an inherited fd that no -netdev names", netdevs);
    }
    return std::move(command).value();
}

bool same_command(const std::optional<launcher::CommandLine>& a,
                  const std::optional<launcher::CommandLine>& b) {
    if (a.has_value() != b.has_value()) return false;
    if (!a) return true;
    if (a->argv != b->argv || a->fds.size() != b->fds.size()) return false;
    for (std::size_t i = 0; i < a->fds.size(); ++i)
        if (a->fds[i].target != b->fds[i].target || a->fds[i].source != b->fds[i].source)
            return false;
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto format = !input.empty() && input[0] == '{' ? spec::Format::json : spec::Format::yaml;
    auto loaded = spec::parse_spec(input, file, {format, {}});
    if (!loaded) return 0;

    auto planned = topology::plan(*loaded);
    if (!planned) {
        if (planned.error().code != Errc::topology)
            broken("plan failed with a code other than topology", planned.error().what());
        return 0;
    }
    const std::string json = json_of(*planned);
    auto again = topology::plan(*loaded);
    if (!again || json_of(*again) != json) broken("planning is not deterministic", json);
    (void)text(topology::to_yaml(*planned), "topology::to_yaml failed");
    check_layout(*planned, json);
    auto command = command_of(*loaded, *planned);

    // Resolution, through YAML text as `qshim topology --resolve` users do.
    const spec::VmSpec resolved = topology::resolve(*loaded, *planned);
    for (const auto& d : resolved.disks)
        if (d.bus == spec::DiskBus::virtio && !d.pci_address)
            broken("resolve left a virtio disk unpinned", d.name);
    for (const auto& i : resolved.interfaces)
        if (!i.pci_address) broken("resolve left an interface unpinned", i.name);
    const std::string resolved_yaml = yaml_of(resolved);
    auto reloaded = spec::parse_spec(resolved_yaml, file, {spec::Format::yaml, {}});
    if (!reloaded)
        broken("the resolved spec does not load",
               resolved_yaml + "\n" + reloaded.error().what() +
                   (reloaded.error().diagnostics.empty()
                        ? std::string()
                        : "\n" + to_string(reloaded.error().diagnostics[0])));
    auto replanned = topology::plan(*reloaded);
    if (!replanned) broken("the resolved spec does not plan", replanned.error().what());
    if (json_of(*replanned) != json)
        broken("the resolved spec plans differently", json + "\n---\n" + json_of(*replanned));
    if (!topology::diff(*planned, *replanned).empty())
        broken("diff finds changes between identical topologies", json);
    if (yaml_of(topology::resolve(*reloaded, *replanned)) != resolved_yaml)
        broken("resolving twice changes the spec", resolved_yaml);
    if (!same_command(command_of(*reloaded, *replanned), command))
        broken("the resolved spec has another command line", json);
    return 0;
}
