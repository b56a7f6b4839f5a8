// qshim: the command-line face of libqshim.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <exception>
#include <map>

#include "cli/common.hpp"

namespace {

constexpr const char* help = R"(Usage: qshim COMMAND [ARGS...]

Run QEMU virtual machines from a declarative spec (YAML or JSON), without
libvirt. The PCI topology is computed from the spec alone, so a VM keeps the
same guest-visible addresses every time it is started from the same spec.

Commands:
  validate SPEC        check a spec and report every problem
  topology SPEC        show the PCI topology: every device's guest address
  topology --resolve   pin every address into the spec
  topology --diff      compare the guest ABI of two specs
  topology --fingerprint
                       the guest ABI a live migration checks, with its digest
  cmdline SPEC         print the QEMU command line
  plan SPEC            the pod resources the VM needs (CPUs, memory, memlock)
  run SPEC             start the VM and supervise it until it ends
  run --incoming ADDR  receive it from a live migration instead (ctl migrate)
  ctl COMMAND          manage a running VM through its API socket (run --api-socket)
  convert MANIFEST     print the spec a KubeVirt VirtualMachineInstance becomes
                       (every command above takes the manifest itself too)

Run 'qshim COMMAND --help' for a command's options and examples.

Examples:
  qshim run --console examples/demo.yaml
  qshim validate examples/demo.yaml
  qshim topology examples/demo.yaml
  qshim topology --diff vm-v1.yaml vm-v2.yaml

Options:
  -h, --help      show this help
  --version       print the version

Exit status: 0 success, 1 ABI changed (topology --diff), 2 invalid spec or
usage, 3 launch failure, 4 QEMU crashed, 5 forced stop, 6 QMP lost,
7 migrated away, 70 internal error.
Documentation: docs/ (spec.md, topology.md, cli.md, api.md, events.md, plan.md,
migration.md, kubevirt.md).
)";

// A closed stdin, stdout or stderr would be taken by the next fd qshim opens (a socket, the QMP
// end), so writes meant for the console or the log would land in it: fill them with /dev/null.
void fill_closed_stdio() {
    for (;;) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0) return;
        if (fd > STDERR_FILENO) {
            close(fd);
            return;
        }
        fcntl(fd, F_SETFD, 0);  // a standard stream is inherited like any other
    }
}

}  // namespace

int main(int argc, char** argv) {
    fill_closed_stdio();
    using namespace qshim::cli;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "help") args = {args[1], "--help"};  // qshim help COMMAND
    if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
        fmt::print("{}", help);
        return args.empty() ? exit_invalid : exit_ok;
    }
    if (args[0] == "--version") {
        fmt::print("qshim {}\n", QSHIM_VERSION);
        return exit_ok;
    }
    static const std::map<std::string, Command> commands = {
        {"validate", cmd_validate}, {"convert", cmd_convert}, {"topology", cmd_topology},
        {"cmdline", cmd_cmdline},   {"plan", cmd_plan},       {"run", cmd_run},
        {"ctl", cmd_ctl},
    };
    auto it = commands.find(args[0]);
    if (it == commands.end()) {
        fmt::print(stderr, "qshim: unknown command '{}'\nTry 'qshim --help'.\n", args[0]);
        return exit_invalid;
    }
    try {
        return it->second(std::vector<std::string>(args.begin() + 1, args.end()));
    } catch (const std::exception& e) {
        // The library reports errors as values; reaching here is a bug, reported as one.
        fmt::print(stderr, "qshim: internal error: {}\n", e.what());
        return exit_internal;
    }
}
