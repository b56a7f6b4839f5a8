// qshim run: start a VM from a spec and supervise it like a container entrypoint.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <qshim/api.hpp>
#include <qshim/launcher.hpp>
#include <qshim/log.hpp>
#include <qshim/vm.hpp>

#include "cli/common.hpp"
#include "cli/event_writer.hpp"
#include "cli/terminal_console.hpp"
#include "common/spawn.hpp"

namespace qshim::cli {

namespace {

namespace asio = boost::asio;

constexpr const char* help = R"(Usage: qshim run [options] SPEC

Start the VM SPEC describes and supervise it until it ends. QEMU starts paused;
qshim connects to its QMP monitor over an inherited socket, checks that QEMU
created every planned device, then lets the guest run.

Stopping: SIGTERM or SIGINT (Ctrl-C; with an interactive --console, Ctrl-C
goes to the guest and Ctrl-] stops the VM) presses the guest's ACPI power button and
waits up to lifecycle.gracePeriodSeconds for it to power off, then asks QEMU to
quit, then kills it. A VM still starting (its guest never ran) is killed at
once, which counts as stopped. The guest powering off by itself ends qshim
too. Run as PID 1 (a container entrypoint), qshim also reaps orphaned processes.

Sandbox (docs/security.md): QEMU runs with no capabilities, no_new_privs, a
seccomp deny-list (security.seccomp) and no core dumps, as security.runAs:
107:107 by default when qshim runs as root, qshim's own ids otherwise. The
files the spec names are checked as that uid before anything starts: give
them to it (chown 107:107 vm/). Once QEMU runs, qshim keeps only CAP_KILL,
CAP_SETUID, CAP_SETGID, CAP_DAC_OVERRIDE and CAP_SYS_NICE, and sets no_new_privs.

Options:
  --console            the guest's serial console: on a terminal, interactive
                       (raw mode: every key goes to the guest, Ctrl-C too;
                       Ctrl-] stops the VM as SIGTERM does); otherwise its
                       output on stdout
  --events PATH|-      write lifecycle events as JSON lines to PATH (appended)
                       or to stdout (-); see docs/events.md
  --api-socket PATH    serve the control API (HTTP/1.1 + JSON) on this unix
                       socket, mode 0600, once the guest runs: hotplug disks
                       and NICs, pause, resume, shut down, stream events. Use
                       'qshim ctl --api-socket PATH ...' or curl; docs/api.md
  --incoming ADDRESS   start as the target of a live migration instead of
                       booting: listen on unix:PATH, tcp:HOST:PORT or fd:N (an
                       inherited listening socket), check the source's guest
                       ABI (the fingerprint), receive the VM, and run it once
                       the source has let go. SPEC is the source's live spec
                       ('qshim ctl status' .spec). SIGTERM before then cancels;
                       the source keeps its VM. See docs/migration.md
  --tls-dir DIR        with --incoming: the stream is TLS; DIR holds
                       ca-cert.pem, server-cert.pem and server-key.pem,
                       readable by QEMU's uid (security.runAs)
  --state-dir DIR      where the VM keeps its files (default SPEC's folder/.qshim/NAME):
                       the UEFI variable store (kept, so boot entries persist),
                       the cloud-init seed and ephemeral disks' overlays (made
                       at start, deleted when the VM ends); docs/local.md
  --accel auto|kvm|tcg override the spec's machine.accel
  --qemu PATH          the QEMU binary (default qemu-system-x86_64 from PATH)
  --qmp-socket PATH    also serve a QMP monitor on this unix socket, to inspect
                       or debug QEMU by hand; qshim does not see what is done there
  --qmp-timeout SECONDS
                       how long qshim waits for QEMU to answer a QMP command
                       (default 30); a QEMU that does not answer fails the
                       change with a timeout (API 504), and a stop goes on
  -v, --verbose        debug logging (or QSHIM_LOG=qmp:debug,*:info)
  --volume-root KIND=DIR
                       for a KubeVirt manifest: where its volumes are
                       (qshim convert --help), once per KIND
  -h, --help           show this help

Exit status:
  0  the guest powered off (by itself, or when asked within the grace period),
     or a stop came before the guest ever ran
  2  invalid spec or usage: nothing was started
  3  launch failure: QEMU could not start or rejected the plan (its exit
     status, argv and the tail of its stderr are printed), or the API socket
     could not be served (the VM is stopped again)
  4  QEMU crashed, or was killed or stopped behind qshim's back
  5  the guest did not power off in time and was stopped by force
  6  qshim lost its QMP connection to QEMU (a qmp-lost event says why); the
     VM ran on unchangeable until it ended or was stopped with SIGTERM, so
     how the guest ended is unknown
  7  the VM migrated away: it runs on the target now (for --incoming, a
     failed migration is 3: the source keeps the VM)

Example:
  qshim run --console --events - examples/demo.yaml
  qshim run --api-socket /run/vm1.sock vm1.yaml &
  qshim ctl --api-socket /run/vm1.sock status
  qshim run --incoming unix:/run/in.sock --api-socket /run/vm1b.sock live.json
)";

int exit_code(VmExit::Reason reason) {
    switch (reason) {
        case VmExit::Reason::guest_shutdown:
        case VmExit::Reason::stopped:
            return exit_ok;
        case VmExit::Reason::forced:
            return exit_forced_stop;
        case VmExit::Reason::crashed:
            return exit_qemu_crashed;
        case VmExit::Reason::launch_failed:
            return exit_launch_failed;
        case VmExit::Reason::qmp_lost:
            return exit_qmp_lost;
        case VmExit::Reason::migrated:
            return exit_migrated;
    }
    return exit_internal;
}

// As PID 1, orphans re-parented to us must be reaped or they stay zombies. QEMU itself is
// reaped by the Vm (through its pidfd), so it is skipped here.
void reap_orphans(pid_t qemu) {
    for (;;) {
        siginfo_t info{};
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
        if (info.si_pid == qemu) return;
        waitpid(info.si_pid, nullptr, 0);
        log::write("launcher", log::Level::debug, fmt::format("reaped orphan {}", info.si_pid));
    }
}

}  // namespace

int cmd_run(const std::vector<std::string>& argv) {
    // An events reader that went away must not kill the supervisor (and so the VM): a write to
    // it fails with EPIPE instead. QEMU gets default dispositions back before exec.
    signal(SIGPIPE, SIG_IGN);
    if (wants_help(argv)) {
        fmt::print("{}", help);
        return exit_ok;
    }
    Args args(argv,
              {"--events", "--accel", "--qemu", "--qmp-socket", "--qmp-timeout", "--api-socket",
               volume_root_option, "--incoming", "--tls-dir", "--state-dir"},
              {"--console", "--verbose", "-v"});
    if (!args.ok()) return usage_error("run", args.error());
    if (args.positional().size() != 1) return usage_error("run", "expected exactly one SPEC file");
    VmOptions options;
    if (auto a = args.get("--accel")) {
        if (*a == "auto")
            options.command.accel = spec::Accel::automatic;
        else if (*a == "kvm")
            options.command.accel = spec::Accel::kvm;
        else if (*a == "tcg")
            options.command.accel = spec::Accel::tcg;
        else
            return usage_error("run", "--accel must be auto, kvm or tcg");
    }
    if (auto q = args.get("--qemu")) options.command.qemu_binary = *q;
    if (auto t = args.get("--qmp-timeout")) {
        char* end = nullptr;
        unsigned long seconds = std::strtoul(t->c_str(), &end, 10);
        if (t->empty() || *end != '\0' || seconds < 1 || seconds > 3600)
            return usage_error("run", "--qmp-timeout must be a whole number of seconds, 1 to 3600");
        options.command_timeout = std::chrono::seconds(seconds);
    }
    if (auto q = args.get("--qmp-socket"))
        options.command.qmp_socket = std::filesystem::absolute(*q).string();
    if (auto dir = args.get("--state-dir")) {
        if (dir->empty()) return usage_error("run", "--state-dir needs a DIR");
        options.command.state_dir = std::filesystem::absolute(*dir).lexically_normal().string();
    }
    // On a terminal the console is interactive (qshim relays it); otherwise QEMU writes it to
    // stdout itself.
    const bool interactive = args.has("--console") && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    options.console_to_stdout = args.has("--console") && !interactive;
    options.own_console = interactive;
    if (auto in = args.get("--incoming")) {
        if (in->empty()) return usage_error("run", "--incoming needs an ADDRESS");
        options.incoming = *in;
    }
    if (auto dir = args.get("--tls-dir")) {
        if (options.incoming.empty()) return usage_error("run", "--tls-dir is for --incoming");
        std::error_code ec;
        if (!std::filesystem::is_directory(*dir, ec))
            return usage_error("run", fmt::format("--tls-dir {}: not a folder", *dir));
        options.incoming_tls_dir = std::filesystem::absolute(*dir).string();
    }
    if (const char* env = std::getenv("QSHIM_LOG")) log::configure(env);
    if (args.has("--verbose") || args.has("-v")) log::configure("*:debug");

    asio::io_context io;
    EventWriter events(io.get_executor());
    if (auto target = args.get("--events"); target && !events.open(*target)) {
        fmt::print(stderr, "qshim run: cannot open {} for events: {}\n", *target,
                   std::strerror(errno));
        return exit_invalid;
    }
    auto load = load_options("run", args);
    if (!load) return exit_invalid;
    auto planned = plan_or_report(args.positional()[0], *load);
    if (!planned) return exit_invalid;  // nothing has been started
    // With the API, qshim holds the console for `qshim ctl console`, unless the spec hands it to
    // whoever connects to serial.socket.
    if (args.get("--api-socket") && planned->spec.serial.socket.empty()) options.own_console = true;
    options.on_event = [&events](const nlohmann::json& e) { events.write(e); };

    // Installed before QEMU exists, so no signal can arrive unhandled.
    asio::signal_set stop_signals(io, SIGTERM, SIGINT);
    asio::signal_set child_signals(io, SIGCHLD);
    const bool pid1 = getpid() == 1;
    Vm vm(io.get_executor(), std::move(planned->spec), std::move(planned->topology), options);

    // A handler may already be queued (with success) when supervision ends and cancels the
    // waits; `done` keeps it from arming a new wait that would keep io.run() alive forever.
    bool done = false;
    std::function<void()> wait_stop = [&] {
        stop_signals.async_wait([&](const boost::system::error_code& ec, int sig) {
            if (ec || done) return;
            log::write("launcher", log::Level::info,
                       fmt::format("{}: stopping the VM", sigabbrev_np(sig)));
            vm.request_stop();
            wait_stop();
        });
    };
    std::function<void()> wait_child = [&] {
        child_signals.async_wait([&](const boost::system::error_code& ec, int) {
            if (ec || done) return;
            if (pid1) reap_orphans(vm.pid());
            wait_child();
        });
    };
    wait_stop();
    wait_child();

    // Declared after the Vm: destroyed before it, as the server borrows the Vm.
    std::optional<ApiServer> api;
    std::optional<TerminalConsole> terminal;
    bool cannot_supervise = false;
    int code = exit_internal;
    auto on_failure = [&](const std::string&) {
        // A bug ended supervision: no QEMU may run on unsupervised, and nothing may wait forever.
        if (vm.pid() > 0 && vm.state() != VmState::exited) kill(vm.pid(), SIGKILL);
        done = true;
        events.stop_waiting();
        stop_signals.cancel();
        child_signals.cancel();
    };
    detail::spawn(
        io.get_executor(),
        [&]() -> asio::awaitable<void> {
            auto started = co_await vm.start();
            // A stop asked while QEMU was still starting is a stop, not a failure to report.
            if (!started && started.error().code != Errc::state) print_error(started.error());
            if (started && interactive) {
                terminal.emplace(io.get_executor(), vm, [&vm] { vm.request_stop(); });
                if (auto shown = terminal->start(); !shown)
                    fmt::print(stderr, "qshim run: no interactive console: {}\n",
                               shown.error().what());
            }
            if (auto path = args.get("--api-socket"); started && path) {
                api.emplace(io.get_executor(), vm, *path);
                if (auto served = api->start(); !served) {
                    // A controller that cannot reach its VM cannot manage it: do not leave it
                    // running.
                    fmt::print(stderr, "qshim run: cannot serve the API: {}; stopping the VM\n",
                               served.error().what());
                    cannot_supervise = true;
                    vm.request_stop(std::chrono::milliseconds(0));
                }
            }
            // QEMU runs and the API socket is bound: what qshim still needs is small.
            if (started && !cannot_supervise)
                if (auto locked =
                        launcher::lock_down_supervisor(launcher::supervisor_needs(vm.spec()));
                    !locked) {
                    fmt::print(stderr, "qshim run: {}; stopping the VM\n", locked.error().what());
                    cannot_supervise = true;
                    vm.request_stop(std::chrono::milliseconds(0));
                }
            VmExit exit = co_await vm.wait_exit();
            if (terminal) terminal->stop();
            if (api) api->stop();
            code = cannot_supervise ? exit_launch_failed : exit_code(exit.reason);
            if (started && !cannot_supervise && exit.reason != VmExit::Reason::guest_shutdown &&
                exit.reason != VmExit::Reason::stopped && exit.reason != VmExit::Reason::migrated)
                fmt::print(stderr, "qshim: VM {}: QEMU {} ({})\n", vm.spec().name, exit.description,
                           to_string(exit.reason));
            if (pid1) reap_orphans(-1);
            done = true;
            events.stop_waiting();
            stop_signals.cancel();
            child_signals.cancel();
        },
        "supervising the VM", on_failure);
    io.run();
    events.flush(std::chrono::seconds(2));  // the last events (exited) for a reader still reading
    return code;
}

}  // namespace qshim::cli
