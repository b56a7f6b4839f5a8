// A running VM: QEMU spawned from a planned spec, driven over QMP, supervised until it is gone.
#pragma once

#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <qshim/launcher.hpp>
#include <qshim/qmp.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <sys/types.h>

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
    std::chrono::milliseconds start_timeout{30'000};  // QEMU to answer QMP and accept the plan
    std::chrono::milliseconds quit_timeout{5'000};    // after `quit`, before SIGKILL
    // Lifecycle events (docs/events.md), each a JSON object with "event" and "time".
    std::function<void(const nlohmann::json&)> on_event;
};

enum class VmState { created, starting, running, paused, stopping, exited };
QSHIM_API const char* to_string(VmState state);

// Bound to one executor; all calls from it. Destroying a Vm whose QEMU still runs kills QEMU.
class QSHIM_API Vm {
public:
    Vm(boost::asio::any_io_executor executor, spec::VmSpec spec, topology::Topology topology, VmOptions options);
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
    // lifecycle.gracePeriodSeconds) `quit`, then SIGKILL. Returns at once; see wait_exit().
    void request_stop(std::optional<std::chrono::milliseconds> grace = std::nullopt);

    VmState state() const;
    pid_t pid() const;
    const std::vector<std::string>& argv() const;
    qmp::Client& qmp();
    const spec::VmSpec& spec() const;
    const topology::Topology& topology() const;

    class Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace qshim
