// Shared CLI plumbing: error printing and spec loading.
#include "cli/common.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace qshim::cli {

void print_error(const Error& error) {
    if (error.diagnostics.empty()) {
        fmt::print(stderr, "qshim: {}\n", error.what());
        return;
    }
    // Diagnostics alone, one per line, in the FILE:LINE:COL: path: reason form editors jump to;
    // then the first line of the error, its summary (the rest repeats the diagnostics).
    for (const auto& d : error.diagnostics) fmt::print(stderr, "{}\n", to_string(d));
    const std::string what = error.what();
    fmt::print(stderr, "qshim: {}\n", what.substr(0, what.find('\n')));
}

int usage_error(const std::string& command, const std::string& message) {
    fmt::print(stderr, "qshim {}: {}\nTry 'qshim {} --help'.\n", command, message, command);
    return exit_invalid;
}

std::optional<spec::VmSpec> load_or_report(const std::string& path,
                                           const spec::LoadOptions& options) {
    std::vector<std::string> notes;
    spec::LoadOptions with_notes = options;
    if (!with_notes.notes) with_notes.notes = &notes;
    auto loaded = spec::load_spec(path, with_notes);
    for (const auto& note : notes) fmt::print(stderr, "qshim: note: {}: {}\n", path, note);
    if (!loaded) {
        print_error(loaded.error());
        return std::nullopt;
    }
    return std::move(loaded).value();
}

std::optional<Planned> plan_or_report(const std::string& path, const spec::LoadOptions& options) {
    auto spec = load_or_report(path, options);
    if (!spec) return std::nullopt;
    auto topo = topology::plan(*spec);
    if (!topo) {
        print_error(topo.error());
        return std::nullopt;
    }
    return Planned{std::move(*spec), std::move(topo).value()};
}

const char* const volume_root_help =
    R"(  --volume-root KIND=DIR
                       for a KubeVirt manifest: find its volumes in DIR instead
                       of virt-launcher's folder (docs/kubevirt.md). KIND is
                       container-disks, vmi-disks, block, secrets, kernel-boot,
                       config-maps, downward-api or service-account; repeat
                       for each.
)";

std::optional<spec::LoadOptions> load_options(const std::string& command, const Args& args) {
    spec::LoadOptions options;
    auto& roots = options.volume_roots;
    const std::pair<const char*, std::string*> kinds[] = {
        {"container-disks", &roots.container_disks},
        {"vmi-disks", &roots.vmi_disks},
        {"block", &roots.block_devices},
        {"secrets", &roots.secrets},
        {"kernel-boot", &roots.kernel_boot},
        {"config-maps", &roots.config_maps},
        {"downward-api", &roots.downward_api},
        {"service-account", &roots.service_account},
    };
    for (const auto& value : args.all(volume_root_option)) {
        auto eq = value.find('=');
        std::string kind = value.substr(0, eq);
        auto it = std::find_if(std::begin(kinds), std::end(kinds),
                               [&](const auto& k) { return kind == k.first; });
        if (eq == std::string::npos || eq + 1 == value.size() || it == std::end(kinds)) {
            usage_error(command, fmt::format("--volume-root {}: expected KIND=DIR, KIND one of "
                                             "container-disks, vmi-disks, block, secrets, "
                                             "kernel-boot, config-maps, downward-api, "
                                             "service-account",
                                             value));
            return std::nullopt;
        }
        // Relative folders are the caller's working directory's, as any path on a command line.
        std::error_code ec;
        std::string dir =
            std::filesystem::absolute(value.substr(eq + 1), ec).lexically_normal().string();
        while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
        *it->second = dir;
    }
    return options;
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
