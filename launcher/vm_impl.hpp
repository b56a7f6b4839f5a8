// Vm::Impl: the state one VM's supervisor keeps. Its parts live in vm.cpp (the phase, events,
// accessors), vm_launch.cpp (start), vm_supervise.cpp (exit, stderr, QMP events) and
// vm_stop.cpp (the stop ladder).
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <deque>
#include <map>
#include <qshim/vm.hpp>

#include "common/async_event.hpp"
#include "launcher/console.hpp"
#include "launcher/cpu_placement.hpp"
#include "launcher/helper.hpp"
#include "launcher/helper_plan.hpp"
#include "launcher/hotplug.hpp"
#include "launcher/lifecycle.hpp"
#include "launcher/migration.hpp"
#include "launcher/migration_channel.hpp"
#include "launcher/process.hpp"
#include "launcher/state_dir.hpp"

namespace qshim {

class Vm::Impl : public std::enable_shared_from_this<Impl> {
  public:
    Impl(boost::asio::any_io_executor ex, spec::VmSpec spec, topology::Topology topo,
         VmOptions options);
    ~Impl();

    // The owner let go of the Vm: kill QEMU, and stop calling back into an owner that is gone.
    void abandon();

    // vm_launch.cpp
    boost::asio::awaitable<Result<void>> start();

    // vm_stop.cpp
    void request_stop(std::optional<std::chrono::milliseconds> grace);

    boost::asio::awaitable<VmExit> wait_exit();
    boost::asio::awaitable<Result<void>> run_control(std::string command);
    launcher::detail::Hotplug& hotplug() { return hotplug_; }

    VmState state() const { return launcher::detail::public_state(phase_); }
    pid_t pid() const { return child_.pid; }
    const std::vector<std::string>& argv() const { return argv_; }
    const spec::VmSpec& spec() const { return spec_; }
    const spec::VmSpec& live_spec() const { return live_.spec; }
    const topology::Topology& live_topology() const { return live_.topology; }
    std::vector<std::string> removing() const;
    std::vector<std::string> diverged() const;
    const nlohmann::json& qemu_version() const { return qemu_version_; }
    VmCpus cpus() const;

    // vm_migrate.cpp
    boost::asio::awaitable<Result<void>> migrate(MigrationRequest request);
    MigrationStatus migration() const;
    boost::asio::awaitable<Result<void>> cancel_migration();

    std::size_t subscribe(std::function<void(const nlohmann::json&)> sink);
    void unsubscribe(std::size_t id) { subscribers_.erase(id); }

    Result<std::size_t> attach_console(std::function<void(std::string_view)> on_output,
                                       std::function<void()> on_end);
    void detach_console(std::size_t id);
    boost::asio::awaitable<Result<void>> write_console(std::string bytes);

  private:
    using Phase = launcher::detail::Phase;
    using Input = launcher::detail::Input;

    // The one place the phase changes. False when the input does not apply in this phase.
    bool apply(Input input);
    Result<void> can_change() const;
    // Sends an event to every sink; a sink that throws is logged, never allowed to stop us.
    void emit(const char* event, nlohmann::json data);

    // vm_launch.cpp
    Result<void> spawn_qemu(const std::string& context);
    bool stopped_before_running() const;
    Error stop_before_running_error(const std::string& context) const;
    Error fail_early(const std::string& message, const std::string& context);
    boost::asio::awaitable<Error> fail_launch(const std::string& why, const std::string& context);
    boost::asio::awaitable<Result<void>> verify_plan();

    // vm_placement.cpp
    Result<void> plan_host(const std::string& context);
    boost::asio::awaitable<Result<void>> place_threads();
    boost::asio::awaitable<Result<launcher::detail::QemuThreads>> read_threads();
    static boost::asio::awaitable<void> watch_placement(std::shared_ptr<Impl> self);
    void check_placement();
    void fail_placement(const std::string& message, const std::string& log_prefix);
    void placed(const char* reason);

    // vm_migrate.cpp: the source side
    // The one place the migration's phase changes. False when the input does not apply.
    bool migrate_to(launcher::detail::MigrationInput input);
    Error migration_state_error() const;
    static boost::asio::awaitable<void> run_migration(std::shared_ptr<Impl> self);
    boost::asio::awaitable<Result<void>> stream_migration();
    boost::asio::awaitable<Result<void>> follow_migration(qmp::EventListener& events);
    boost::asio::awaitable<Result<void>> confirm_migration();
    boost::asio::awaitable<void> finish_migration(Result<void> outcome);
    boost::asio::awaitable<void> quit_migrated();

    // vm_incoming.cpp: the target side
    Result<void> open_incoming(const std::string& context);
    boost::asio::awaitable<Result<void>> receive_migration();
    boost::asio::awaitable<void> confirm_incoming(bool running, std::string reason);

    // vm_helpers.cpp
    launcher::detail::HelperBinaries helper_binaries() const;
    boost::asio::awaitable<Result<void>> start_helpers(
        const launcher::detail::SandboxPlan& sandbox);
    boost::asio::awaitable<Result<void>> start_helper(launcher::detail::HelperSpec plan);
    // The qemu-storage-daemon of a hot-plugged storageDaemon disk, and its stop at the unplug.
    boost::asio::awaitable<Result<std::string>> start_disk_helper(spec::Disk disk);
    boost::asio::awaitable<void> stop_disk_helper(std::string disk);
    void on_helper_exit(const launcher::detail::Helper& helper, int status);
    static boost::asio::awaitable<void> report_helper_exit(
        std::shared_ptr<Impl> self, std::shared_ptr<launcher::detail::Helper> helper, int status);
    // The end of every exit path: stops the helpers, then sets exited_.
    void finish_exit();
    static boost::asio::awaitable<void> stop_helpers(std::shared_ptr<Impl> self);
    void kill_helpers();

    // vm_supervise.cpp
    static boost::asio::awaitable<void> watch_exit(std::shared_ptr<Impl> self);
    static boost::asio::awaitable<void> read_stderr(std::shared_ptr<Impl> self);
    static boost::asio::awaitable<void> pump_events(std::shared_ptr<Impl> self);
    void on_event(const qmp::Event& e);
    void on_qmp_closed();
    void on_exit(int status);
    // For a VM that never got a QEMU: it ends now, with the reason its phase gives.
    void end_without_qemu(const std::string& description);

    // vm_stop.cpp
    static boost::asio::awaitable<void> stop_ladder(std::shared_ptr<Impl> self,
                                                    std::chrono::milliseconds grace,
                                                    bool press_button);
    static boost::asio::awaitable<void> end_by_signals(std::shared_ptr<Impl> self);

    void remove_sockets();
    std::string state_dir() const;

    boost::asio::any_io_executor ex_;
    spec::VmSpec spec_;
    topology::Topology topo_;
    VmOptions options_;
    qmp::Client qmp_;
    Phase phase_ = Phase::created;
    VmExit exit_;
    qshim::detail::AsyncEvent exited_;       // QEMU reaped (or never started), helpers stopped
    qshim::detail::AsyncEvent qemu_reaped_;  // QEMU reaped: set before its exit is handled
    qshim::detail::AsyncEvent qmp_lost_;     // the QMP connection ended while QEMU ran
    qshim::detail::AsyncEvent drained_;      // QEMU's stderr read to its end
    qshim::detail::AsyncEvent events_done_;  // QMP events read to the end of the connection
    boost::asio::posix::stream_descriptor pid_watch_;
    boost::asio::posix::stream_descriptor stderr_;
    launcher::detail::Child child_;
    std::vector<std::string> argv_;
    std::shared_ptr<qmp::EventListener> events_;
    launcher::detail::LiveState live_;
    launcher::detail::Hotplug hotplug_;
    nlohmann::json qemu_version_ = nlohmann::json::object();
    std::map<std::size_t, std::function<void(const nlohmann::json&)>> subscribers_;
    std::size_t last_subscriber_ = 0;
    std::deque<std::string> stderr_tail_;
    launcher::detail::RunFiles run_files_;  // seed, overlays: removed when the VM ends
    // Helper processes serving devices (qemu-storage-daemon), in the order they started.
    std::vector<std::shared_ptr<launcher::detail::Helper>> helpers_;
    // How helpers are sandboxed, kept from the start for the helpers of hot-plugged devices.
    std::optional<launcher::detail::SandboxPlan> helper_sandbox_;
    // The serial console, when qshim holds it (VmOptions::own_console); set at spawn.
    std::shared_ptr<launcher::detail::ConsoleRelay> console_;
    // CPU placement (vm_placement.cpp): what was planned in which cpuset, and QEMU's threads.
    cgroups::Limits limits_;
    cgroups::HostTopology host_;
    launcher::Placement placement_;
    launcher::detail::QemuThreads threads_;
    launcher::detail::PlacementState placement_state_ = launcher::detail::PlacementState::unpinned;
    std::string placement_error_;
    std::string apply_error_;  // the last sched_setaffinity failure, retried every check
    // Live migration (vm_migrate.cpp, vm_incoming.cpp).
    launcher::detail::MigrationPhase migration_phase_ = launcher::detail::MigrationPhase::none;
    MigrationRequest migration_request_;
    MigrationStatus migration_status_;
    launcher::detail::MigrationAddress migration_address_;
    std::shared_ptr<launcher::detail::MigrationSocket> migration_socket_;
    std::unique_ptr<launcher::detail::MigrationListener> incoming_;  // target, until accepted
    int64_t incoming_ms_ = 0;  // target: from the connection to the commit
    // A stop asked during a migration: it is cancelled first, then the stop goes on.
    std::optional<std::chrono::milliseconds> stop_after_migration_;
};

}  // namespace qshim
