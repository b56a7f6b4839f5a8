// Vm: spawn QEMU paused, connect QMP, verify the plan, run, and supervise until QEMU is gone.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <chrono>
#include <csignal>
#include <deque>
#include <map>
#include <qshim/log.hpp>
#include <qshim/vm.hpp>
#include <set>

#include "common/async_event.hpp"
#include "common/clock.hpp"
#include "common/spawn.hpp"
#include "common/unique_fd.hpp"
#include "launcher/hotplug.hpp"
#include "launcher/preflight.hpp"
#include "launcher/process.hpp"

extern char** environ;

namespace qshim {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto token = asio::as_tuple(asio::use_awaitable);
constexpr size_t stderr_tail_lines = 20;

void info(const std::string& m) { log::write("launcher", log::Level::info, m); }

}  // namespace

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
        case VmState::stopping:
            return "stopping";
        case VmState::exited:
            return "exited";
    }
    return "?";
}

class Vm::Impl : public std::enable_shared_from_this<Impl> {
    static qmp::ClientOptions qmp_options(std::chrono::milliseconds start_timeout) {
        qmp::ClientOptions o;
        o.connect_timeout = start_timeout;
        return o;
    }

  public:
    Impl(asio::any_io_executor ex, spec::VmSpec spec, topology::Topology topo, VmOptions options)
        : ex_(ex),
          spec_(std::move(spec)),
          topo_(std::move(topo)),
          options_(std::move(options)),
          qmp_(ex, qmp_options(options_.start_timeout)),
          exited_(ex),
          pid_watch_(ex),
          stderr_(ex),
          live_(launcher::detail::make_live_state(spec_, topo_)),
          hotplug_(
              ex, qmp_, live_,
              [this](const char* event, json data) { emit(event, std::move(data)); },
              [this] { return state_ == VmState::running || state_ == VmState::paused; },
              [this] { return std::shared_ptr<void>(shared_from_this()); }) {}

    // The owner let go of the Vm. The supervising coroutines keep this object alive until QEMU
    // is reaped, so kill QEMU now and stop calling back into an owner that is gone.
    void abandon() {
        options_.on_event = nullptr;
        subscribers_.clear();
        if (child_.pid > 0 && state_ != VmState::exited)
            launcher::detail::pidfd_kill(child_.pidfd, SIGKILL);
        else if (state_ == VmState::created)
            state_ = VmState::exited;
    }

    ~Impl() {
        // Nothing outlives its Vm: a QEMU still running now would be an orphan.
        if (child_.pid > 0 && state_ != VmState::exited) {
            launcher::detail::pidfd_kill(child_.pidfd, SIGKILL);
            waitpid(child_.pid, nullptr, 0);
            remove_sockets();
        }
    }

    asio::awaitable<Result<void>> start() {
        const std::string context = "starting VM " + spec_.name;
        if (state_ != VmState::created)
            co_return make_error(
                Errc::state, fmt::format("the VM is {}, not created", to_string(state_)), context);
        state_ = VmState::starting;
        emit("spec-accepted", {{"topologyVersion", topo_.version}, {"machine", topo_.machine}});
        if (auto ok = launcher::detail::preflight(spec_); !ok) {
            state_ = VmState::exited;
            exit_ = {VmExit::Reason::launch_failed, 0, "not started"};
            exited_.set();
            emit("error", {{"message", ok.error().what()}});
            co_return std::move(ok).error();
        }
        remove_sockets();

        int pair[2], errpipe[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0 ||
            pipe2(errpipe, O_CLOEXEC) != 0)
            co_return fail_early(fmt::format("socketpair/pipe: {}", std::strerror(errno)), context);
        detail::UniqueFd ours(pair[0]), theirs(pair[1]), err_read(errpipe[0]),
            err_write(errpipe[1]);
        detail::UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
        if (devnull.get() < 0)
            co_return fail_early(fmt::format("/dev/null: {}", std::strerror(errno)), context);

        launcher::CommandOptions command = options_.command;
        command.qmp_fd = 3;
        command.paused = true;  // nothing runs before qshim has checked the plan
        command.serial_stdio = options_.console_to_stdout;
        auto argv = launcher::build_argv(spec_, topo_, command);
        if (!argv) co_return fail_early(argv.error().what(), context);
        argv_ = std::move(argv).value();

        launcher::detail::SpawnPlan plan;
        plan.argv = argv_;
        for (char** e = environ; e && *e; ++e) plan.env.emplace_back(*e);
        plan.fds = {devnull.get(), options_.console_to_stdout ? STDOUT_FILENO : devnull.get(),
                    err_write.get(), theirs.get()};
        auto child = launcher::detail::spawn(plan);
        if (!child) co_return fail_early(child.error().what(), context);
        child_ = *child;
        theirs.reset();
        err_write.reset();
        info(fmt::format("QEMU started, pid {}", child_.pid));
        emit("qemu-started", {{"pid", child_.pid}, {"argv", argv_}});

        pid_watch_.assign(child_.pidfd);
        stderr_.assign(err_read.release());
        auto self = shared_from_this();
        detail::spawn(ex_, watch_exit(self), "watching QEMU");
        detail::spawn(ex_, read_stderr(self), "reading QEMU stderr");

        auto connected =
            co_await with_deadline(qmp_.connect_fd(ours.release()), options_.start_timeout);
        if (!connected)
            co_return co_await fail_launch("QMP handshake failed: " + connected.error().what(),
                                           context);
        qemu_version_ = (*connected).value("version", json::object());
        emit("qmp-connected", {{"qemu", qemu_version_}});
        events_ = qmp_.listen({}, 256);
        detail::spawn(ex_, pump_events(self), "reading QMP events");

        if (auto v = co_await verify_plan(); !v)
            co_return co_await fail_launch(v.error().what(), context);
        if (stop_requested_)  // the stop ladder is already quitting QEMU; the guest never ran
            co_return make_error(Errc::state, "a stop was requested before the guest ran", context);
        auto cont = co_await qmp_.execute("cont");
        if (!cont) co_return co_await fail_launch("cont: " + cont.error().what(), context);
        was_running_ = true;
        if (state_ == VmState::starting) state_ = VmState::running;
        co_return Result<void>{};
    }

    asio::awaitable<VmExit> wait_exit() {
        co_await exited_.wait();
        co_return exit_;
    }

    void request_stop(std::optional<std::chrono::milliseconds> grace) {
        if (state_ == VmState::exited || stop_requested_) return;
        stop_requested_ = true;
        if (state_ == VmState::created) {  // nothing runs yet: there is nothing to stop
            state_ = VmState::exited;
            exit_ = {VmExit::Reason::stopped, 0, "not started"};
            exited_.set();
            return;
        }
        auto period = grace.value_or(std::chrono::seconds(spec_.lifecycle.grace_period_seconds));
        emit("shutdown-requested", {{"gracePeriodMs", period.count()}});
        // No grace period means no time for the guest: go straight to quit.
        bool could_power_down =
            state_ == VmState::running && qmp_.state() == qmp::State::running && period.count() > 0;
        state_ = VmState::stopping;
        detail::spawn(ex_, stop_ladder(shared_from_this(), period, could_power_down),
                      "stopping the VM");
    }

    asio::awaitable<Result<topology::Device>> add_disk(spec::Disk disk) {
        return hotplug_.add_disk(std::move(disk));
    }
    asio::awaitable<Result<topology::Device>> add_interface(spec::Interface nic) {
        return hotplug_.add_interface(std::move(nic));
    }
    asio::awaitable<Result<void>> remove(topology::DeviceKind kind, std::string name,
                                         std::chrono::milliseconds timeout) {
        return hotplug_.remove(kind, std::move(name), timeout);
    }

    // stop/cont take the same turn as hotplug: one change to the VM at a time.
    asio::awaitable<Result<void>> run_control(std::string command) {
        auto turn = co_await hotplug_.lock();
        // stop and cont are idempotent in QEMU: only a VM that is not up is an error.
        if (state_ != VmState::running && state_ != VmState::paused)
            co_return make_error(Errc::state, fmt::format("the VM is {}", to_string(state_)),
                                 command);
        auto r = co_await qmp_.execute(command);
        if (!r) co_return std::move(r).error();
        co_return Result<void>{};
    }

    std::vector<std::string> removing() const {
        std::vector<std::string> out;
        for (const auto& [key, done] : live_.removing) out.push_back(key);
        return out;
    }
    const json& qemu_version() const { return qemu_version_; }
    size_t subscribe(std::function<void(const json&)> sink) {
        subscribers_[++last_subscriber_] = std::move(sink);
        return last_subscriber_;
    }
    void unsubscribe(size_t id) { subscribers_.erase(id); }
    const spec::VmSpec& live_spec() const { return live_.spec; }
    const topology::Topology& live_topology() const { return live_.topology; }

    VmState state() const { return state_; }
    pid_t pid() const { return child_.pid; }
    const std::vector<std::string>& argv() const { return argv_; }
    qmp::Client& qmp() { return qmp_; }
    const spec::VmSpec& spec() const { return spec_; }
    const topology::Topology& topology() const { return topo_; }

  private:
    template <typename T>
    asio::awaitable<Result<T>> with_deadline(asio::awaitable<Result<T>> op,
                                             std::chrono::milliseconds timeout) {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer deadline(ex_, timeout);
        auto r = co_await (std::move(op) || deadline.async_wait(token));
        if (r.index() == 0) co_return std::get<0>(std::move(r));
        co_return make_error(Errc::timeout, fmt::format("no answer within {} ms", timeout.count()));
    }

    Error fail_early(const std::string& message, const std::string& context) {
        state_ = VmState::exited;
        exit_ = {VmExit::Reason::launch_failed, 0, "not started"};
        exited_.set();
        emit("error", {{"message", message}});
        return make_error(Errc::launch, message, context);
    }

    // Kills QEMU, waits for it, and reports what it said: the exit status, argv, stderr tail.
    asio::awaitable<Error> fail_launch(const std::string& why, const std::string& context) {
        if (!exited_.is_set()) {
            launcher::detail::pidfd_kill(child_.pidfd, SIGKILL);
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
    asio::awaitable<Result<void>> verify_plan() {
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

    static std::set<std::string> child_names(const json& listing) {
        std::set<std::string> names;
        for (const auto& p : listing)
            if (p.value("type", std::string()).rfind("child<", 0) == 0)
                names.insert(p.value("name", std::string()));
        return names;
    }

    static asio::awaitable<void> watch_exit(std::shared_ptr<Impl> self) {
        // A pidfd becomes readable when the process exits; no SIGCHLD handler is needed, so an
        // embedding program keeps its own signal handling.
        co_await self->pid_watch_.async_wait(asio::posix::stream_descriptor::wait_read, token);
        int status = 0;
        while (waitpid(self->child_.pid, &status, 0) < 0 && errno == EINTR) {
        }
        // QEMU's last events (SHUTDOWN with guest: true) may still sit unread in the socket when
        // its exit is noticed; they decide how it ended, so read them first. QEMU's exit closed
        // the socket, so this ends at once.
        if (self->events_) co_await self->events_done_.wait(std::chrono::seconds(1));
        self->on_exit(status);
    }

    void on_exit(int status) {
        using R = VmExit::Reason;
        R reason = stop_requested_   ? (forced_ ? R::forced : R::stopped)
                   : guest_shutdown_ ? R::guest_shutdown
                   : was_running_    ? R::crashed
                                     : R::launch_failed;
        exit_ = {reason, status, launcher::detail::describe_wait_status(status)};
        state_ = VmState::exited;
        qmp_.close();
        remove_sockets();
        json data{{"pid", child_.pid}, {"reason", to_string(reason)}};
        if (WIFEXITED(status)) data["code"] = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) {
            data["signal"] = WTERMSIG(status);
            data["signalName"] =
                sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?";
        }
        info(fmt::format("QEMU {} ({})", exit_.description, to_string(reason)));
        emit("exited", data);
        exited_.set();
    }

    static asio::awaitable<void> read_stderr(std::shared_ptr<Impl> self) {
        asio::streambuf buffer(64 * 1024);  // bounded: a longer line is cut, never buffered whole
        for (;;) {
            auto [ec, n] = co_await asio::async_read_until(self->stderr_, buffer, '\n', token);
            if (ec && buffer.size() == 0) break;
            std::string line(asio::buffers_begin(buffer.data()),
                             asio::buffers_begin(buffer.data()) + (n ? n : buffer.size()));
            buffer.consume(n ? n : buffer.size());
            while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
            log::write("qemu", log::Level::warn, line);
            self->stderr_tail_.push_back(std::move(line));
            if (self->stderr_tail_.size() > stderr_tail_lines) self->stderr_tail_.pop_front();
        }
        self->drained_.set();
    }

    static asio::awaitable<void> pump_events(std::shared_ptr<Impl> self) {
        auto listener = self->events_;
        for (;;) {
            auto e = co_await listener->next(std::chrono::hours(24 * 365));
            if (!e) {
                if (e.error().code == Errc::timeout) continue;
                break;
            }
            self->on_event(*e);
        }
        self->events_done_.set();
    }

    void on_event(const qmp::Event& e) {
        log::write("qmp", log::Level::debug, "event " + e.name + " " + e.data.dump());
        if (e.name == "SHUTDOWN") {
            bool guest = e.data.value("guest", false);
            guest_shutdown_ = guest_shutdown_ || guest;
            emit(guest ? "guest-shutdown" : "shutdown", {{"reason", e.data.value("reason", "")}});
        } else if (e.name == "STOP" && state_ == VmState::running) {
            state_ = VmState::paused;
            emit("paused", {});
        } else if (e.name == "RESUME") {
            if (state_ == VmState::starting || state_ == VmState::paused) state_ = VmState::running;
            emit("running", {});
        }
    }

    static asio::awaitable<void> stop_ladder(std::shared_ptr<Impl> self,
                                             std::chrono::milliseconds grace, bool power_down) {
        if (power_down) {
            auto r = co_await self->qmp_.execute("system_powerdown", json::object(),
                                                 std::chrono::milliseconds(5000));
            if (!r)
                log::write("launcher", log::Level::warn, "system_powerdown: " + r.error().what());
            if (co_await self->exited_.wait(grace)) co_return;
        }
        // A guest that never ran, or that was paused, had no chance to power off: quitting it
        // is the stop itself, not a forced one.
        self->forced_ = power_down;
        self->emit("forcing-stop", {{"step", "quit"}});
        // Without QMP (still starting) there is nobody to ask: go straight to SIGKILL.
        if (self->qmp_.state() == qmp::State::running) {
            (void)co_await self->qmp_.execute("quit", json::object(),
                                              std::chrono::milliseconds(2000));
            if (co_await self->exited_.wait(self->options_.quit_timeout)) co_return;
        }
        self->emit("forcing-stop", {{"step", "kill"}});
        launcher::detail::pidfd_kill(self->child_.pidfd, SIGKILL);
    }

    void remove_sockets() {
        launcher::detail::remove_stale_sockets(spec_);
        launcher::detail::remove_stale_socket(options_.command.qmp_socket);
    }

    void emit(const char* event, json data) {
        json e{{"event", event}, {"time", detail::now_rfc3339()}, {"vm", spec_.name}};
        for (auto& [k, v] : data.items()) e[k] = v;
        if (options_.on_event) options_.on_event(e);
        // A copy: a sink may unsubscribe itself (an API client that went away).
        auto sinks = subscribers_;
        for (auto& [id, sink] : sinks) sink(e);
    }

    asio::any_io_executor ex_;
    spec::VmSpec spec_;
    topology::Topology topo_;
    VmOptions options_;
    qmp::Client qmp_;
    detail::AsyncEvent exited_;
    detail::AsyncEvent drained_{ex_};      // QEMU's stderr read to its end
    detail::AsyncEvent events_done_{ex_};  // QMP events read to the end of the connection
    asio::posix::stream_descriptor pid_watch_;
    asio::posix::stream_descriptor stderr_;
    VmState state_ = VmState::created;
    launcher::detail::Child child_;
    std::vector<std::string> argv_;
    std::shared_ptr<qmp::EventListener> events_;
    launcher::detail::LiveState live_;
    launcher::detail::Hotplug hotplug_;
    json qemu_version_ = json::object();
    std::map<size_t, std::function<void(const json&)>> subscribers_;
    size_t last_subscriber_ = 0;
    std::deque<std::string> stderr_tail_;
    VmExit exit_;
    bool stop_requested_ = false;
    bool forced_ = false;
    bool guest_shutdown_ = false;
    bool was_running_ = false;
};

}  // namespace qshim

namespace qshim {

Vm::Vm(boost::asio::any_io_executor executor, spec::VmSpec spec, topology::Topology topology,
       VmOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(spec), std::move(topology),
                                   std::move(options))) {}
Vm::~Vm() { impl_->abandon(); }
boost::asio::awaitable<Result<void>> Vm::start() { return impl_->start(); }
boost::asio::awaitable<VmExit> Vm::wait_exit() { return impl_->wait_exit(); }
void Vm::request_stop(std::optional<std::chrono::milliseconds> grace) {
    impl_->request_stop(grace);
}
VmState Vm::state() const { return impl_->state(); }
pid_t Vm::pid() const { return impl_->pid(); }
const std::vector<std::string>& Vm::argv() const { return impl_->argv(); }
qmp::Client& Vm::qmp() { return impl_->qmp(); }
const spec::VmSpec& Vm::spec() const { return impl_->spec(); }
const topology::Topology& Vm::topology() const { return impl_->live_topology(); }
const spec::VmSpec& Vm::live_spec() const { return impl_->live_spec(); }
std::vector<std::string> Vm::removing() const { return impl_->removing(); }
const nlohmann::json& Vm::qemu_version() const { return impl_->qemu_version(); }
std::size_t Vm::subscribe(std::function<void(const nlohmann::json&)> sink) {
    return impl_->subscribe(std::move(sink));
}
void Vm::unsubscribe(std::size_t id) { impl_->unsubscribe(id); }
boost::asio::awaitable<Result<topology::Device>> Vm::add_disk(spec::Disk disk) {
    return impl_->add_disk(std::move(disk));
}
boost::asio::awaitable<Result<topology::Device>> Vm::add_interface(spec::Interface nic) {
    return impl_->add_interface(std::move(nic));
}
boost::asio::awaitable<Result<void>> Vm::remove_disk(std::string name,
                                                     std::chrono::milliseconds timeout) {
    return impl_->remove(topology::DeviceKind::disk, std::move(name), timeout);
}
boost::asio::awaitable<Result<void>> Vm::remove_interface(std::string name,
                                                          std::chrono::milliseconds timeout) {
    return impl_->remove(topology::DeviceKind::interface, std::move(name), timeout);
}
boost::asio::awaitable<Result<void>> Vm::pause() { return impl_->run_control("stop"); }
boost::asio::awaitable<Result<void>> Vm::resume() { return impl_->run_control("cont"); }

}  // namespace qshim
