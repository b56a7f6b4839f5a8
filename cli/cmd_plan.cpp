// qshim plan: the pod resources a VM needs (CPUs, memory, huge pages, memlock).
#include <fmt/format.h>

#include "cli/common.hpp"

namespace qshim::cli {

namespace {

constexpr const char* help = R"(Usage: qshim plan [--json | --format k8s] SPEC

Print what the VM's pod must be given: CPUs, memory, huge pages and the locked
memory limit. Memory is guest RAM plus an overhead computed from the spec:
QEMU's base, per vCPU, per device (hotplug ports count as devices to come),
per IOThread, the boot files QEMU holds, the page tables of guest RAM, qshim
itself and a margin. The figures come from measuring QEMU 7.2's peak memory
(docs/plan.md has the model, the measurements and how it compares with
KubeVirt's formula).

  (default)        a table for people, each overhead term with its reason
  --json           the same as JSON
  --format k8s     a Kubernetes `resources:` block for the VM's container:
                   memory limits = requests; with cpu.dedicated whole CPUs with
                   limits = requests (Guaranteed QoS, the static CPU manager)

Options:
  --boot-size SIZE the size of boot.kernel + boot.initrd (such as 16Mi), for
                   planning where those files are not; default: read them
  --volume-root KIND=DIR
                   for a KubeVirt manifest: where its volumes are
                   (qshim convert --help), once per KIND
  -h, --help       show this help

Example:
  qshim plan examples/demo.yaml
  qshim plan --format k8s --boot-size 16Mi examples/kubernetes/vm.yaml

Exit status: 0 success, 2 invalid spec, unreadable boot files or usage.
)";

}  // namespace

int cmd_plan(const std::vector<std::string>& argv) {
    if (wants_help(argv)) {
        fmt::print("{}", help);
        return exit_ok;
    }
    Args args(argv, {"--format", "--boot-size", volume_root_option}, {"--json"});
    if (!args.ok()) return usage_error("plan", args.error());
    auto options = load_options("plan", args);
    if (!options) return exit_invalid;
    if (args.positional().size() != 1) return usage_error("plan", "expected exactly one SPEC file");
    std::string format = args.has("--json") ? "json" : args.get("--format").value_or("text");
    if (args.has("--json") && args.has("--format"))
        return usage_error("plan", "--json and --format exclude each other");
    if (format != "text" && format != "json" && format != "k8s")
        return usage_error("plan", "--format must be k8s (or use --json)");
    auto planned = plan_or_report(args.positional()[0], *options);
    if (!planned) return exit_invalid;
    launcher::PlanInputs inputs;
    if (auto size = args.get("--boot-size")) {
        inputs.boot_files_bytes = spec::parse_size(*size);
        if (!inputs.boot_files_bytes)
            return usage_error("plan", "--boot-size must be a size such as 16Mi");
    }
    auto plan = launcher::plan_resources(planned->spec, planned->topology, inputs);
    if (!plan) {
        print_error(plan.error());
        return exit_invalid;
    }
    if (format == "json")
        fmt::print("{}", launcher::to_json(*plan));
    else if (format == "k8s")
        fmt::print("{}", launcher::to_k8s(*plan));
    else
        fmt::print("{}", launcher::to_text(*plan, planned->spec));
    return exit_ok;
}

}  // namespace qshim::cli
