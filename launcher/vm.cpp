// Vm: the public facade, the phase's single point of change, and event delivery.
#include <fmt/format.h>
#include <sys/wait.h>

#include <csignal>
#include <filesystem>
#include <qshim/log.hpp>
#include <qshim/vm.hpp>

#include "common/clock.hpp"
#include "common/json_yaml.hpp"
#include "launcher/preflight.hpp"
#include "launcher/vm_impl.hpp"

namespace qshim {

namespace asio = boost::asio;
using launcher::detail::Phase;
using nlohmann::json;

const char* to_string(VmExit::Reason reason) {
    switch (reason) {
        case VmExit::Reason::guest_shutdown:
            return "guest-shutdown";
        case VmExit::Reason::stopped:
            return "stopped";
        case VmExit::Reason::forced:
            return "forced";
        case VmExit::Reason::crashed:
            return "crashed";
        case VmExit::Reason::launch_failed:
            return "launch-failed";
        case VmExit::Reason::qmp_lost:
            return "qmp-lost";
        case VmExit::Reason::migrated:
            return "migrated";
    }
    return "?";
}

const char* to_string(VmState state) {
    switch (state) {
        case VmState::created:
            return "created";
        case VmState::starting:
            return "starting";
        case VmState::running:
            return "running";
        case VmState::paused:
            return "paused";
        case VmState::qmp_lost:
            return "qmp-lost";
        case VmState::stopping:
            return "stopping";
        case VmState::exited:
            return "exited";
    }
    return "?";
}

namespace {

qmp::ClientOptions qmp_options(const VmOptions& o) {
    qmp::ClientOptions q;
    q.connect_timeout = o.start_timeout;
    q.command_timeout = o.command_timeout;
    return q;
}

}  // namespace

Vm::Impl::Impl(asio::any_io_executor ex, spec::VmSpec spec, topology::Topology topo,
               VmOptions options)
    : ex_(ex),
      spec_(std::move(spec)),
      topo_(std::move(topo)),
      options_(std::move(options)),
      qmp_(ex, qmp_options(options_)),
      exited_(ex),
      qemu_reaped_(ex),
      qmp_lost_(ex),
      drained_(ex),
      events_done_(ex),
      pid_watch_(ex),
      stderr_(ex),
      live_(launcher::detail::make_live_state(spec_, topo_)),
      hotplug_(
          ex, qmp_, live_, [this](const char* event, json data) { emit(event, std::move(data)); },
          [this] { return can_change(); },
          [this] { return std::shared_ptr<void>(shared_from_this()); }) {
    hotplug_.set_helpers({[this](spec::Disk disk) { return start_disk_helper(std::move(disk)); },
                          [this](std::string disk) { return stop_disk_helper(std::move(disk)); }});
}

void Vm::Impl::abandon() {
    options_.on_event = nullptr;
    subscribers_.clear();
    kill_helpers();
    if (child_.pid > 0 && phase_ != Phase::exited)
        launcher::detail::signal_child(child_, SIGKILL);
    else if (phase_ == Phase::created)
        phase_ = Phase::exited;  // never started: nothing to wait for
}

Vm::Impl::~Impl() {
    // Nothing outlives its Vm: a QEMU still running now would be an orphan.
    if (child_.pid > 0 && phase_ != Phase::exited) {
        launcher::detail::signal_child(child_, SIGKILL);
        waitpid(child_.pid, nullptr, 0);
        remove_sockets();
    }
    run_files_.remove();  // QEMU is gone (or never was): nothing has them open
}

bool Vm::Impl::apply(Input input) {
    auto to = launcher::detail::next_phase(phase_, input);
    if (!to) {
        log::write("launcher", log::Level::debug,
                   fmt::format("{} ignored in phase {}", to_string(input), to_string(phase_)));
        return false;
    }
    if (*to != phase_)
        log::write("launcher", log::Level::debug,
                   fmt::format("phase {} -> {} ({})", to_string(phase_), to_string(*to),
                               to_string(input)));
    phase_ = *to;
    return true;
}

Result<void> Vm::Impl::can_change() const {
    if (launcher::detail::migration_in_progress(migration_phase_))
        return make_error(Errc::conflict,
                          fmt::format("a migration is under way ({}): the VM cannot change until "
                                      "it ends",
                                      to_string(migration_phase_)));
    if (launcher::detail::accepts_changes(phase_)) return {};
    if (phase_ == Phase::qmp_lost)
        return make_error(Errc::state,
                          "qshim lost its QMP connection to QEMU: the VM can no longer be changed");
    return make_error(Errc::state,
                      fmt::format("the VM is {}, not running", to_string(public_state(phase_))));
}

void Vm::Impl::emit(const char* event, json data) {
    json e{{"event", event}, {"time", qshim::detail::now_rfc3339()}, {"vm", spec_.name}};
    for (auto& [k, v] : data.items()) e[k] = v;
    auto deliver = [&](const std::function<void(const json&)>& sink) {
        try {
            sink(e);
        } catch (const std::exception& x) {
            // A sink is the embedder's code: its failure must not stop supervision (an
            // exception here would leave wait_exit() waiting forever).
            log::write("launcher", log::Level::error,
                       fmt::format("an event sink failed on {}: {}", event, x.what()));
        } catch (...) {
            log::write("launcher", log::Level::error,
                       fmt::format("an event sink failed on {}", event));
        }
    };
    // Copies: a sink may drop the Vm (and with it options_) or unsubscribe itself while it runs.
    if (auto sink = options_.on_event) deliver(sink);
    // A copy: a sink may unsubscribe itself (an API client that went away).
    auto sinks = subscribers_;
    for (auto& [id, sink] : sinks) deliver(sink);
}

asio::awaitable<VmExit> Vm::Impl::wait_exit() {
    co_await exited_.wait();
    co_return exit_;
}

// stop and cont take the same turn as hotplug: one change to the VM at a time.
asio::awaitable<Result<void>> Vm::Impl::run_control(std::string command) {
    auto turn = co_await hotplug_.lock();
    if (auto ok = can_change(); !ok) {
        Error e = ok.error();
        e.context = command;
        co_return e;
    }
    // stop and cont are idempotent in QEMU: only a VM that is not up is an error.
    auto r = co_await qmp_.execute(command);
    if (!r) co_return std::move(r).error();
    co_return Result<void>{};
}

std::vector<std::string> Vm::Impl::removing() const {
    std::vector<std::string> out;
    for (const auto& [key, done] : live_.removing) out.push_back(key);
    return out;
}

std::vector<std::string> Vm::Impl::diverged() const {
    std::vector<std::string> out;
    for (const auto& s : live_.strays) out.push_back(launcher::detail::to_string(s));
    return out;
}

std::size_t Vm::Impl::subscribe(std::function<void(const json&)> sink) {
    subscribers_[++last_subscriber_] = std::move(sink);
    return last_subscriber_;
}

void Vm::Impl::remove_sockets() {
    launcher::detail::remove_stale_sockets(spec_);
    launcher::detail::remove_stale_socket(options_.command.qmp_socket);
}

Result<std::size_t> Vm::Impl::attach_console(std::function<void(std::string_view)> on_output,
                                             std::function<void()> on_end) {
    if (!console_)
        return make_error(Errc::unsupported,
                          spec_.serial.socket.empty()
                              ? "qshim does not hold this VM's console (it was started without "
                                "own_console)"
                              : "the console is served on serial.socket " + spec_.serial.socket +
                                    "; connect there",
                          "attaching to the serial console");
    return console_->attach(std::move(on_output), std::move(on_end));
}

void Vm::Impl::detach_console(std::size_t id) {
    if (console_) console_->detach(id);
}

boost::asio::awaitable<Result<void>> Vm::Impl::write_console(std::string bytes) {
    if (!console_)
        co_return make_error(Errc::unsupported, "qshim does not hold this VM's console",
                             "writing to the serial console");
    auto console = console_;
    co_return co_await console->write(std::move(bytes));
}

std::string Vm::Impl::state_dir() const {
    return options_.command.state_dir.empty() ? launcher::default_state_dir(spec_)
                                              : options_.command.state_dir;
}

Vm::Vm(boost::asio::any_io_executor executor, spec::VmSpec spec, topology::Topology topology,
       VmOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(spec), std::move(topology),
                                   std::move(options))) {}
Vm::~Vm() { impl_->abandon(); }

namespace {

// Holds the Impl for as long as `op` runs: a caller may drop the Vm (from an event sink, say)
// while another of its calls is still waiting. The reference is taken when the call is made.
template <typename T>
boost::asio::awaitable<T> holding(std::shared_ptr<Vm::Impl> impl, boost::asio::awaitable<T> op) {
    (void)impl;
    co_return co_await std::move(op);
}

}  // namespace

boost::asio::awaitable<Result<void>> Vm::start() { return holding(impl_, impl_->start()); }
boost::asio::awaitable<VmExit> Vm::wait_exit() { return holding(impl_, impl_->wait_exit()); }
void Vm::request_stop(std::optional<std::chrono::milliseconds> grace) {
    impl_->request_stop(grace);
}
VmState Vm::state() const { return impl_->state(); }
pid_t Vm::pid() const { return impl_->pid(); }
const std::vector<std::string>& Vm::argv() const { return impl_->argv(); }
const spec::VmSpec& Vm::spec() const { return impl_->spec(); }
const topology::Topology& Vm::topology() const { return impl_->live_topology(); }
const spec::VmSpec& Vm::live_spec() const { return impl_->live_spec(); }
std::vector<std::string> Vm::removing() const { return impl_->removing(); }
std::vector<std::string> Vm::diverged() const { return impl_->diverged(); }
const nlohmann::json& Vm::qemu_version() const { return impl_->qemu_version(); }
VmCpus Vm::cpus() const { return impl_->cpus(); }
std::size_t Vm::subscribe(std::function<void(const nlohmann::json&)> sink) {
    return impl_->subscribe(std::move(sink));
}
void Vm::unsubscribe(std::size_t id) { impl_->unsubscribe(id); }
Result<std::size_t> Vm::attach_console(std::function<void(std::string_view)> on_output,
                                       std::function<void()> on_end) {
    return impl_->attach_console(std::move(on_output), std::move(on_end));
}
void Vm::detach_console(std::size_t id) { impl_->detach_console(id); }
boost::asio::awaitable<Result<void>> Vm::write_console(std::string bytes) {
    return holding(impl_, impl_->write_console(std::move(bytes)));
}
boost::asio::awaitable<Result<topology::Device>> Vm::add_disk(spec::Disk disk) {
    return holding(impl_, impl_->hotplug().add_disk(std::move(disk)));
}
boost::asio::awaitable<Result<topology::Device>> Vm::add_interface(spec::Interface nic) {
    return holding(impl_, impl_->hotplug().add_interface(std::move(nic)));
}
boost::asio::awaitable<Result<void>> Vm::remove_disk(std::string name,
                                                     std::chrono::milliseconds timeout) {
    return holding(impl_,
                   impl_->hotplug().remove(topology::DeviceKind::disk, std::move(name), timeout));
}
boost::asio::awaitable<Result<void>> Vm::remove_interface(std::string name,
                                                          std::chrono::milliseconds timeout) {
    return holding(
        impl_, impl_->hotplug().remove(topology::DeviceKind::interface, std::move(name), timeout));
}
boost::asio::awaitable<Result<void>> Vm::change_medium(std::string disk, MediumChange change) {
    std::optional<spec::Disk> medium;
    if (!change.path.empty()) {
        spec::Disk d;
        d.name = disk;
        d.device = spec::DiskDevice::cdrom;
        d.read_only = true;
        d.format = change.format;
        d.path_as_written = change.path;
        const std::filesystem::path written(change.path);
        d.path =
            (written.is_absolute() ? written
                                   : std::filesystem::path(impl_->live_spec().base_dir) / written)
                .lexically_normal()
                .string();
        medium = std::move(d);
    }
    return holding(impl_, impl_->hotplug().change_medium(std::move(disk), std::move(medium),
                                                         change.force, eject_request_wait));
}
boost::asio::awaitable<Result<void>> Vm::pause() {
    return holding(impl_, impl_->run_control("stop"));
}
boost::asio::awaitable<Result<void>> Vm::resume() {
    return holding(impl_, impl_->run_control("cont"));
}
boost::asio::awaitable<Result<void>> Vm::migrate(MigrationRequest request) {
    return holding(impl_, impl_->migrate(std::move(request)));
}
MigrationStatus Vm::migration() const { return impl_->migration(); }
boost::asio::awaitable<Result<void>> Vm::cancel_migration() {
    return holding(impl_, impl_->cancel_migration());
}

}  // namespace qshim
