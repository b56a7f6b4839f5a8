// Vm::Impl::start: preflight, spawn QEMU paused, connect QMP, verify the plan, then run.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <qshim/log.hpp>
#include <set>

#include "common/deadline.hpp"
#include "common/spawn.hpp"
#include "common/unique_fd.hpp"
#include "launcher/preflight.hpp"
#include "launcher/state_dir.hpp"
#include "launcher/vm_impl.hpp"

extern char** environ;

namespace qshim {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;
using qshim::detail::UniqueFd;

namespace {

std::set<std::string> child_names(const json& listing) {
    std::set<std::string> names;
    for (const auto& p : listing)
        if (p.value("type", std::string()).rfind("child<", 0) == 0)
            names.insert(p.value("name", std::string()));
    return names;
}

std::string errno_message(const char* what) {
    return fmt::format("{}: {}", what, std::strerror(errno));
}

}  // namespace

asio::awaitable<Result<void>> Vm::Impl::start() {
    const std::string context = "starting VM " + spec_.name;
    if (phase_ != Phase::created)
        co_return make_error(Errc::state,
                             fmt::format("the VM is {}, not created", to_string(state())), context);
    emit("spec-accepted", {{"topologyVersion", topo_.version}, {"machine", topo_.machine}});
    // The sandbox is planned first: the files are then checked as the uid QEMU will have.
    const auto host = launcher::detail::current_credentials();
    auto sandbox = launcher::detail::plan_sandbox(spec_, host);
    if (!sandbox) co_return fail_early(sandbox.error().what(), context);
    launcher::detail::QemuIdentity qemu{sandbox->ids, sandbox->change_ids};
    hotplug_.set_qemu_identity(qemu);
    std::vector<std::string> warnings;
    launcher::detail::PreflightInput checks{qemu, options_.command.qmp_socket,
                                            options_.command.accel};
    checks.firmware_dir = options_.command.firmware_dir;
    checks.serial_log_by_qshim = options_.own_console;
    checks.storage_daemon_binary = options_.command.storage_daemon_binary;
    checks.virtiofsd_binary = options_.command.virtiofsd_binary;
    checks.passt_binary = options_.command.passt_binary;
    if (auto ok = launcher::detail::preflight(spec_, checks, warnings); !ok) {
        emit("error", {{"message", ok.error().what()}});
        end_without_qemu("not started");
        co_return std::move(ok).error();
    }
    for (const auto& w : warnings) {
        log::write("launcher", log::Level::warn, w);
        emit("warning", {{"message", w}});
    }
    // The CPUs are placed (and huge pages counted) before anything starts: a cpuset too small
    // starts nothing.
    if (auto ok = plan_host(context); !ok) {
        emit("error", {{"message", ok.error().what()}});
        end_without_qemu("not started");
        co_return std::move(ok).error();
    }
    // A target would make an empty overlay of its own: the guest's writes live in the source's.
    if (!options_.incoming.empty())
        if (auto why = launcher::detail::unmigratable_disks(spec_); !why.empty())
            co_return fail_early(why, context);
    // The state directory's files (UEFI variables, seed, overlays): removed again, with every
    // file this run made, by whatever ends the VM (on_exit, end_without_qemu, ~Impl).
    if (launcher::detail::needs_state(spec_)) {
        launcher::detail::StateInput state{state_dir(), options_.command.firmware_dir,
                                           options_.qemu_img, qemu};
        auto prepared = launcher::detail::prepare_state(spec_, state);
        if (!prepared) co_return fail_early(prepared.error().what(), context);
        run_files_ = std::move(*prepared);
    }
    remove_sockets();
    // The processes that serve devices listen before QEMU connects to them; one that cannot
    // start starts nothing (and the ones before it are stopped again).
    if (auto ok = co_await start_helpers(*sandbox); !ok) {
        emit("error", {{"message", ok.error().what()}});
        end_without_qemu("not started");
        co_await exited_.wait();
        co_return make_error(Errc::launch, ok.error().message, context);
    }
    // A migration target listens before QEMU exists: an address that cannot be served starts
    // nothing.
    if (!options_.incoming.empty())
        if (auto ok = open_incoming(context); !ok) co_return fail_early(ok.error().what(), context);

    // Every fd is owned from the moment it exists, so no failure below can leak one.
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        co_return fail_early(errno_message("socketpair"), context);
    UniqueFd ours(pair[0]), theirs(pair[1]);
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) != 0) co_return fail_early(errno_message("pipe2"), context);
    UniqueFd err_read(errpipe[0]), err_write(errpipe[1]);
    UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull) co_return fail_early(errno_message("/dev/null"), context);

    // The serial console qshim holds: a socketpair of its own, QEMU's end inherited like QMP's.
    UniqueFd console_ours, console_theirs, console_log;
    if (options_.own_console) {
        int console_pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console_pair) != 0)
            co_return fail_early(errno_message("socketpair"), context);
        console_ours = UniqueFd(console_pair[0]);
        console_theirs = UniqueFd(console_pair[1]);
        if (!spec_.serial.log.empty()) {
            console_log =
                UniqueFd(open(spec_.serial.log.c_str(),
                              O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640));
            if (!console_log)
                co_return fail_early(
                    fmt::format("serial.log: {}: {}", spec_.serial.log, std::strerror(errno)),
                    context);
        }
    }

    launcher::CommandOptions command = options_.command;
    command.state_dir = state_dir();
    if (console_theirs) command.serial_fd = console_theirs.get();
    command.qmp_fd = theirs.get();
    command.paused = true;  // nothing runs before qshim has checked the plan
    command.incoming = !options_.incoming.empty();
    command.serial_stdio = options_.console_to_stdout;
    // numa.guestNodes auto, resolved for this host, is what the guest sees from now on.
    live_.spec = launcher::resolve_numa(std::move(live_.spec), placement_);
    // The host nodes auto bound them to are this host's business; a migration target binds its
    // own (the guest's nodes, vCPUs and memory are guest ABI and stay).
    if (spec_.numa.automatic)
        for (auto& node : live_.spec.numa.nodes) node.host_nodes.reset();
    auto built = launcher::build_command(launcher::resolve_numa(spec_, placement_), topo_, command);
    if (!built) co_return fail_early(built.error().what(), context);
    argv_ = built->argv;

    // The plan is the command line's own: stdio, then every fd argv names, at its number.
    launcher::detail::SpawnPlan plan;
    plan.argv = argv_;
    for (char** e = environ; e && *e; ++e) plan.env.emplace_back(*e);
    plan.sandbox = &*sandbox;
    // Every thread QEMU ever creates inherits this: worker pools and hot-plugged IOThreads stay
    // on the emulator's CPUs (off the vCPUs' with isolateEmulatorThread) without qshim chasing
    // them.
    if (placement_.pinned())
        plan.affinity.assign(placement_.emulator.begin(), placement_.emulator.end());
    plan.fds = {devnull.get(), options_.console_to_stdout ? STDOUT_FILENO : devnull.get(),
                err_write.get()};
    for (const auto& fd : built->fds) {
        if (fd.target != static_cast<int>(plan.fds.size()))
            co_return fail_early(fmt::format("fd plan out of order at {}", fd.target), context);
        plan.fds.push_back(fd.source);
    }
    auto child = launcher::detail::spawn(plan);
    if (!child) co_return fail_early(child.error().what(), context);
    child_ = *child;
    pid_watch_.assign(child_.exit_fd);
    apply(Input::spawned);
    theirs.reset();
    err_write.reset();
    console_theirs.reset();
    if (console_ours) {
        console_ = std::make_shared<launcher::detail::ConsoleRelay>(ex_);
        console_->start(console_ours.release(), std::move(console_log));
    }
    log::write("launcher", log::Level::info, fmt::format("QEMU started, pid {}", child_.pid));
    emit("qemu-started", {{"pid", child_.pid},
                          {"argv", argv_},
                          {"uid", sandbox->ids.uid},
                          {"gid", sandbox->ids.gid},
                          {"seccomp", to_string(spec_.security.seccomp)}});

    stderr_.assign(err_read.release());
    auto self = shared_from_this();
    qshim::detail::spawn(ex_, watch_exit(self), "watching QEMU");
    qshim::detail::spawn(ex_, read_stderr(self), "reading QEMU stderr");

    auto answered = co_await qshim::detail::within(ex_, options_.start_timeout,
                                                   qmp_.connect_fd(ours.release()));
    Result<json> connected =
        answered ? std::move(*answered)
                 : make_error(Errc::timeout, fmt::format("no answer within {} ms",
                                                         options_.start_timeout.count()));
    if (!connected && stopped_before_running()) co_return stop_before_running_error(context);
    if (!connected)
        co_return co_await fail_launch("QMP handshake failed: " + connected.error().what(),
                                       context);
    qemu_version_ = (*connected).value("version", json::object());
    emit("qmp-connected", {{"qemu", qemu_version_}});
    events_ = qmp_.listen({}, 256);
    // If the pump itself failed (a bug), nobody reads QEMU's events: that is a lost QMP.
    std::weak_ptr<Impl> weak = self;
    qshim::detail::spawn(ex_, pump_events(self), "reading QMP events", [weak](const std::string&) {
        if (auto impl = weak.lock(); impl && !impl->exited_.is_set()) impl->on_qmp_closed();
    });

    auto verified = co_await verify_plan();
    // A stop asked meanwhile is already killing QEMU; the guest never ran. (Anything else, such
    // as a `cont` sent on the --qmp-socket monitor, changes nothing: `cont` is idempotent.)
    if (stopped_before_running()) co_return stop_before_running_error(context);
    if (!verified) co_return co_await fail_launch(verified.error().what(), context);
    auto threads = co_await place_threads();
    if (stopped_before_running()) co_return stop_before_running_error(context);
    if (!threads) co_return co_await fail_launch(threads.error().what(), context);
    if (!options_.incoming.empty()) {
        auto received = co_await receive_migration();
        if (stopped_before_running()) co_return stop_before_running_error(context);
        if (!received) co_return co_await fail_launch(received.error().what(), context);
    }
    auto cont = co_await qmp_.execute("cont");
    if (!cont) {
        // A migration target says so, so the source takes its guest back.
        if (!options_.incoming.empty()) co_await confirm_incoming(false, cont.error().what());
        co_return co_await fail_launch("cont: " + cont.error().what(), context);
    }
    if (!options_.incoming.empty()) co_await confirm_incoming(true, {});
    // QEMU's RESUME event may be read before or after this reply: whichever is first moves
    // the phase and announces it.
    if (Phase before = phase_; apply(Input::resumed) && before != phase_) emit("running", {});
    co_return Result<void>{};
}

// A stop asked while starting moved the phase to `aborting` (and, once QEMU is reaped, to
// `exited` with the reason `stopped`): the start then ends without being a launch failure.
bool Vm::Impl::stopped_before_running() const {
    return phase_ == Phase::aborting ||
           (phase_ == Phase::exited && exit_.reason == VmExit::Reason::stopped);
}

Error Vm::Impl::stop_before_running_error(const std::string& context) const {
    return make_error(Errc::state, "a stop was requested before the guest ran", context);
}

Error Vm::Impl::fail_early(const std::string& message, const std::string& context) {
    emit("error", {{"message", message}});
    end_without_qemu("not started");
    return make_error(Errc::launch, message, context);
}

// Kills QEMU, waits for it, and reports what it said: the exit status, argv, stderr tail.
asio::awaitable<Error> Vm::Impl::fail_launch(const std::string& why, const std::string& context) {
    if (!exited_.is_set()) {
        launcher::detail::signal_child(child_, SIGKILL);
        co_await exited_.wait(options_.quit_timeout);
    }
    co_await drained_.wait(1s);  // the rest of QEMU's stderr explains most failures
    std::string message = fmt::format("{}\n  QEMU {}\n  argv:", why, exit_.description);
    for (const auto& a : argv_) message += " " + a;
    message += "\n  QEMU stderr (last lines):";
    for (const auto& line : stderr_tail_) message += "\n    " + line;
    if (stderr_tail_.empty()) message += " (none)";
    emit("error", {{"message", why}});
    co_return make_error(Errc::launch, message, context);
}

// The ids QEMU created must be exactly the ones the topology planned.
asio::awaitable<Result<void>> Vm::Impl::verify_plan() {
    // (Arguments are built outside the co_await: g++ 12 miscompiles string-literal arrays
    // in initializer lists inside coroutines, "array used as initializer".)
    json arguments = json::object();
    arguments["path"] = std::string("/machine/peripheral");
    auto listed = co_await qmp_.execute("qom-list", std::move(arguments));
    if (!listed) co_return make_error(Errc::launch, "qom-list: " + listed.error().what());
    std::set<std::string> present = child_names(*listed);
    std::vector<std::string> missing;
    for (const auto& c : topo_.controllers)
        if (!present.count(c.id)) missing.push_back(c.id);
    for (const auto& d : topo_.devices)
        if (!present.count(d.id)) missing.push_back(d.id);
    if (!missing.empty()) {
        std::string list = missing[0];
        for (size_t i = 1; i < missing.size(); ++i) list += ", " + missing[i];
        co_return make_error(Errc::launch, "QEMU did not create the planned devices: " + list);
    }
    co_return Result<void>{};
}

}  // namespace qshim
