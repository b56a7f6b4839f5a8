// A running VM: QEMU spawned from a planned spec, driven over QMP, supervised until it is gone.
#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <qshim/launcher.hpp>
#include <qshim/qmp.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>

namespace qshim {

// How a VM ended. The CLI maps each reason to its exit code (docs/cli.md).
struct VmExit {
    enum class Reason {
        guest_shutdown,  // the guest powered off by itself
        stopped,         // a stop was requested and the guest powered off within its grace period
        forced,          // a stop was requested and QEMU had to be quit or killed
        crashed,         // QEMU died, or was stopped, behind qshim's back
        launch_failed,   // QEMU exited or was given up on before the guest ran
    };
    Reason reason = Reason::crashed;
    int wait_status = 0;      // as from waitpid; 0 when QEMU never started
    std::string description;  // "exited with status 0", "killed by signal 9 (Killed)"
};
QSHIM_API const char* to_string(VmExit::Reason reason);

struct VmOptions {
    launcher::CommandOptions command;  // qemu binary and accel override; QMP and -S are set by Vm
    bool console_to_stdout = false;    // the guest's serial console on qshim's stdout
    std::chrono::milliseconds start_timeout{30'000};  // QEMU to greet and negotiate QMP
    std::chrono::milliseconds quit_timeout{5'000};    // after `quit`, before SIGKILL
    // Lifecycle events (docs/events.md), each a JSON object with "event" and "time".
    std::function<void(const nlohmann::json&)> on_event;
};

enum class VmState { created, starting, running, paused, stopping, exited };
QSHIM_API const char* to_string(VmState state);

// Bound to one executor; all calls from it, from a thread that outlives the VM (QEMU gets
// SIGKILL when the thread that started it exits). Destroying a Vm whose QEMU still runs kills
// QEMU; let the executor run until wait_exit() would complete so it is reaped.
class QSHIM_API Vm {
  public:
    Vm(boost::asio::any_io_executor executor, spec::VmSpec spec, topology::Topology topology,
       VmOptions options);
    ~Vm();
    Vm(const Vm&) = delete;
    Vm& operator=(const Vm&) = delete;

    // Spawns QEMU paused, connects QMP over an inherited socketpair, checks that QEMU created
    // every planned device, then lets the vCPUs run. On failure nothing is left running and the
    // Error (Errc::launch) carries QEMU's exit status, argv and the tail of its stderr.
    boost::asio::awaitable<Result<void>> start();

    // Completes once QEMU is gone (reaped), however it ended.
    boost::asio::awaitable<VmExit> wait_exit();

    // Graceful stop: ACPI power button, then after the grace period (default: the spec's
    // lifecycle.gracePeriodSeconds) `quit`, then SIGKILL. A VM that is paused or still starting
    // cannot react to the button: it is quit at once. Returns at once; see wait_exit().
    void request_stop(std::optional<std::chrono::milliseconds> grace = std::nullopt);

    // Hotplug. Each validates first (invalid input never reaches QEMU), then puts the device in
    // the first free hotplug port of its class, backend first, then device_add; any failure rolls
    // back in reverse order, leaving QEMU as it was. Calls that change the VM run one at a time.
    // Errors: invalid_spec (bad device), conflict (name taken, no free port), state (VM not
    // running), qmp/launch (QEMU refused; rolled back). Returns the device as placed.
    boost::asio::awaitable<Result<topology::Device>> add_disk(spec::Disk disk);
    boost::asio::awaitable<Result<topology::Device>> add_interface(spec::Interface interface);
    // Unplug: device_del, then wait for QEMU's DEVICE_DELETED (the guest released it) up to
    // `timeout`, retrying while the slot is busy right after a plug; then the backend goes. On
    // timeout (Errc::timeout) the device stays listed in removing() and a later DEVICE_DELETED,
    // or a later call, completes the removal. not_found for an unknown name.
    boost::asio::awaitable<Result<void>> remove_disk(std::string name,
                                                     std::chrono::milliseconds timeout);
    boost::asio::awaitable<Result<void>> remove_interface(std::string name,
                                                          std::chrono::milliseconds timeout);
    boost::asio::awaitable<Result<void>> pause();
    boost::asio::awaitable<Result<void>> resume();

    VmState state() const;
    pid_t pid() const;
    const std::vector<std::string>& argv() const;
    qmp::Client& qmp();
    const spec::VmSpec& spec() const;  // as given to the constructor
    // The live view: the spec with every device pinned where it is, plus hot-plugged devices,
    // minus unplugged ones, and hotplug counts matching the ports left. Starting a new VM from it
    // gives exactly topology() (the basis for migrating a VM after hotplug).
    const spec::VmSpec& live_spec() const;
    const topology::Topology& topology() const;  // live
    std::vector<std::string> removing() const;   // "disk/name", "interface/name" being unplugged
    const nlohmann::json& qemu_version() const;  // from the QMP greeting

    // Lifecycle events as they happen (besides VmOptions::on_event); returns an id for unsubscribe.
    std::size_t subscribe(std::function<void(const nlohmann::json&)> sink);
    void unsubscribe(std::size_t id);

    class Impl;

  private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace qshim
