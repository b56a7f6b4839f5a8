// qshim cmdline: print the QEMU command line for a spec, one argument per line.
#include <fmt/format.h>

#include "cli/common.hpp"

namespace qshim::cli {

namespace {

constexpr const char* help = R"(Usage: qshim cmdline [options] SPEC

Print the QEMU command line qshim would run for SPEC, one argument per line.
-device, -blockdev, -netdev and -object arguments are JSON, so a path holding
',' '=' '"' or a newline cannot inject options.

numa.guestNodes auto is resolved for this host and qshim's cpuset, as
'qshim run' would resolve it here.

An inherited tap fd (backend fd: N) is renumbered for QEMU: fds 3, 4, ... in
the order the command line names them. Which of qshim's fds each one is goes
to stderr, e.g. QEMU must inherit fd 7 as fd 3 (interfaces[0] (net0): tap).

Options:
  --accel auto|kvm|tcg   override the spec's machine.accel
  --qemu PATH            the QEMU binary (default qemu-system-x86_64)
  --qmp-socket PATH      add a QMP monitor listening on this unix socket
  --state-dir DIR        the VM's state directory (default SPEC's folder/.qshim/NAME),
                         where the UEFI variables, seed and overlays are named
  --paused               start with vCPUs stopped (-S)
  --volume-root KIND=DIR for a KubeVirt manifest: where its volumes are
                         (qshim convert --help), once per KIND
  -h, --help             show this help

Exit status: 0 success, 2 invalid spec or usage.
)";

}  // namespace

int cmd_cmdline(const std::vector<std::string>& argv) {
    if (wants_help(argv)) {
        fmt::print("{}", help);
        return exit_ok;
    }
    Args args(argv, {"--accel", "--qemu", "--qmp-socket", "--state-dir", volume_root_option},
              {"--paused"});
    if (!args.ok()) return usage_error("cmdline", args.error());
    if (args.positional().size() != 1)
        return usage_error("cmdline", "expected exactly one SPEC file");
    launcher::CommandOptions options;
    if (auto a = args.get("--accel")) {
        if (*a == "auto")
            options.accel = spec::Accel::automatic;
        else if (*a == "kvm")
            options.accel = spec::Accel::kvm;
        else if (*a == "tcg")
            options.accel = spec::Accel::tcg;
        else
            return usage_error("cmdline", "--accel must be auto, kvm or tcg");
    }
    if (auto q = args.get("--qemu")) options.qemu_binary = *q;
    if (auto s = args.get("--qmp-socket")) options.qmp_socket = *s;
    if (auto dir = args.get("--state-dir")) options.state_dir = *dir;
    options.paused = args.has("--paused");
    auto load = load_options("cmdline", args);
    if (!load) return exit_invalid;
    auto planned = plan_or_report(args.positional()[0], *load);
    if (!planned) return exit_invalid;
    if (planned->spec.numa.automatic) {
        // numa.guestNodes auto depends on the host: show what would run here, now.
        auto limits = cgroups::discover();
        auto host =
            limits ? cgroups::read_host_topology() : Result<cgroups::HostTopology>(limits.error());
        auto placement = host ? launcher::plan_placement(planned->spec, *limits, *host)
                              : Result<launcher::Placement>(host.error());
        if (!placement) {
            print_error(placement.error());
            return exit_invalid;
        }
        planned->spec = launcher::resolve_numa(std::move(planned->spec), *placement);
    }
    auto built = launcher::build_command(planned->spec, planned->topology, options);
    if (!built) {
        print_error(built.error());
        return exit_invalid;
    }
    for (const auto& a : built->argv) fmt::print("{}\n", a);
    // Not part of argv, so not on stdout: which fd each number in argv must be.
    for (const auto& fd : built->fds)
        fmt::print(stderr, "qshim cmdline: QEMU must inherit fd {} as fd {} ({})\n", fd.source,
                   fd.target, fd.purpose);
    return exit_ok;
}

}  // namespace qshim::cli
