// A running VM: QEMU spawned from a planned spec, driven over QMP, supervised until it is gone.
#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
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
#include <set>

namespace qshim {

// How a VM ended. The CLI maps each reason to its exit code (docs/cli.md).
struct VmExit {
    enum class Reason {
        guest_shutdown,  // the guest powered off by itself
        stopped,         // a stop was requested and the guest powered off within its grace period
        forced,          // a stop was requested and QEMU had to be quit or killed
        crashed,         // QEMU died, or was stopped, behind qshim's back
        launch_failed,   // QEMU exited or was given up on before the guest ran
        qmp_lost,        // qshim had lost QEMU's QMP connection before QEMU ended: nobody saw
                         // how the guest ended (a stop then ends QEMU by signals)
        migrated,        // the VM migrated away: it runs on the target, this QEMU was quit
    };
    Reason reason = Reason::crashed;
    int wait_status = 0;      // as from waitpid; 0 when QEMU never started
    std::string description;  // "exited with status 0", "killed by signal 9 (Killed)"
};
QSHIM_API const char* to_string(VmExit::Reason reason);

struct VmOptions {
    launcher::CommandOptions command;  // qemu binary and accel override; QMP and -S are set by Vm
    bool console_to_stdout = false;    // the guest's serial console on qshim's stdout
    // qshim holds the serial console itself (attach_console): for an interactive console, here
    // or through the API. Not with console_to_stdout or the spec's serial.socket (which give the
    // console to another reader); serial.log still logs it, written by qshim.
    bool own_console = false;
    std::chrono::milliseconds start_timeout{30'000};    // QEMU to greet and negotiate QMP
    std::chrono::milliseconds quit_timeout{5'000};      // after `quit` or SIGTERM, before SIGKILL
    std::chrono::milliseconds command_timeout{30'000};  // every QMP command qshim sends
    // A helper process (qemu-storage-daemon) to have its socket listening, once started.
    std::chrono::milliseconds helper_timeout{10'000};
    // Lifecycle events (docs/events.md), each a JSON object with "event" and "time".
    std::function<void(const nlohmann::json&)> on_event;
    // /proc and /sys are read under this folder (qshim's cgroup, the host's CPUs); tests point
    // it at a fake tree. Empty: the real ones.
    std::string system_root;
    // How often a pinned VM checks that its cpuset and its threads' affinity are unchanged,
    // and places the threads again when the kubelet's CPU manager rewrote the cpuset.
    std::chrono::milliseconds placement_check_interval{1'000};
    // Start as a migration target (qshim run --incoming): instead of booting, QEMU waits
    // (-incoming defer) while qshim listens here (unix:PATH, tcp:HOST:PORT or fd:N), checks the
    // source's guest ABI, then hands QEMU the stream. start() completes when the VM runs here.
    std::string incoming;
    // With incoming: the stream is TLS (QEMU's tls-creds-x509, endpoint server, peers verified):
    // ca-cert.pem, server-cert.pem and server-key.pem in this folder, readable by QEMU's uid.
    std::string incoming_tls_dir;
    // Creates ephemeral disks' overlays (Debian's qemu-utils).
    std::string qemu_img = "qemu-img";
    // Each exchange of the migration handshake (hello, loaded, commit, running).
    std::chrono::milliseconds migration_step_timeout{30'000};
};

// A disc for a running VM's cdrom drive (docs/api.md, POST /v1/vm/disks/NAME/media).
struct MediumChange {
    std::string path;  // the image; relative: to the spec's folder. Empty: eject
    spec::DiskFormat format = spec::DiskFormat::raw;
    bool force = false;  // open the tray even when the guest has locked it
};
// How long a guest that has locked a cdrom's tray has to open it when asked to eject.
inline constexpr std::chrono::milliseconds eject_request_wait{3000};

// A live migration asked of a running VM (docs/migration.md). The target is a qshim started
// with `run --incoming` from this VM's live spec.
struct MigrationRequest {
    std::string uri;                                // unix:PATH or tcp:HOST:PORT
    std::chrono::milliseconds downtime_limit{300};  // the pause QEMU may take to switch over
    uint64_t max_bandwidth_mibps = 0;               // 0: unlimited
    unsigned multifd_channels = 0;                  // more than 1 is refused (docs/migration.md)
    bool auto_converge = false;  // let QEMU throttle vCPUs that dirty RAM faster than it is sent
    // Allow switching to post-copy when pre-copy does not converge. Refused (unsupported) in
    // this version: QEMU's sandbox denies userfaultfd (docs/migration.md).
    bool postcopy = false;
    // 0: 150 s per GiB of guest RAM, at least 150 s (KubeVirt's completionTimeoutPerGiB).
    std::chrono::seconds completion_timeout{0};
    // The remaining bytes reached no new low for this long: escalate.
    std::chrono::seconds progress_timeout{150};
    // TLS for the stream (QEMU's tls-creds-x509, endpoint client, the target verified):
    // ca-cert.pem, client-cert.pem and client-key.pem in this folder, readable by QEMU's uid.
    // The target must use TLS too. Empty: plain.
    std::string tls_dir;
    // The name the target's certificate must carry; default: the host of a tcp: URI.
    std::string tls_hostname;
};

// Where a migration of this VM is (GET /v1/vm/migration).
struct MigrationStatus {
    // none, connecting, handshake, active, switchover, confirming, completed, failed,
    // cancelling, cancelled
    std::string state = "none";
    std::string uri;
    std::string error;   // failed: why
    std::string policy;  // the last convergence step taken: downtime, throttle, postcopy
    double percent = 0;
    uint64_t transferred_bytes = 0;
    uint64_t remaining_bytes = 0;
    uint64_t total_bytes = 0;
    uint64_t dirty_rate_bytes = 0;  // per second
    int64_t expected_downtime_ms = 0;
    uint64_t iterations = 0;
    std::optional<int64_t> setup_ms;  // when completed
    std::optional<int64_t> total_ms;
    std::optional<int64_t> downtime_ms;
};

// One thread of QEMU and the CPUs it runs on.
struct VmThread {
    pid_t thread_id = 0;
    std::string name;            // the thread's name: "CPU 0/KVM", "IO io0", "worker", ...
    std::set<unsigned> cpus;     // where the kernel lets it run now
    std::set<unsigned> planned;  // where the placement puts it; empty: anywhere in the cpuset
};

// Where the VM's threads run (GET /v1/vm/cpus).
struct VmCpus {
    std::string placement = "unpinned";  // unpinned, placed, failed
    std::string error;                   // why placement is failed
    std::set<unsigned> cpuset;           // qshim's cpuset when last read
    std::vector<VmThread> vcpus;         // by vCPU index
    std::vector<VmThread> iothreads;     // io0, io1, ...
    std::vector<VmThread> emulator;      // every other thread of QEMU
};

// As the API reports it. `qmp_lost`: QEMU runs, but its QMP connection is gone, so the VM can
// no longer be changed; a stop ends QEMU with SIGTERM, then SIGKILL.
enum class VmState { created, starting, running, paused, qmp_lost, stopping, exited };
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
    // Error (Errc::launch) carries QEMU's exit status, argv and the tail of its stderr. Tap fds
    // the spec names (backend fd: N) must be open in this process and be tap devices; QEMU gets
    // them at the numbers build_command() chose.
    boost::asio::awaitable<Result<void>> start();

    // Completes once QEMU is gone (reaped), however it ended.
    boost::asio::awaitable<VmExit> wait_exit();

    // Graceful stop: ACPI power button, then after the grace period (default: the spec's
    // lifecycle.gracePeriodSeconds) `quit`, then SIGKILL. A VM that is paused or still starting
    // cannot react to the button: it is quit at once. A VM that lost QMP gets SIGTERM, then
    // SIGKILL. Returns at once; see wait_exit().
    void request_stop(std::optional<std::chrono::milliseconds> grace = std::nullopt);

    // Hotplug. Each validates first (invalid input never reaches QEMU), then puts the device in
    // the first free hotplug port of its class, backend first, then device_add; any failure rolls
    // back in reverse order, leaving QEMU as it was. Calls that change the VM run one at a time.
    // Errors: invalid_spec (bad device, or QEMU refused its backend: the Error keeps QEMU's
    // qmp_class), qmp (QEMU refused the device itself, with its class), conflict (name taken, no
    // free port), state (VM not running), timeout or interrupted (QEMU did not answer: what it
    // did is unknown, so what it may hold is listed in diverged() until it is cleaned up).
    // Returns the device as placed.
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
    // A cdrom's disc: inserts change.path in place of whatever the drive holds, or ejects it.
    // The image is checked first and its node added before the tray opens, so a file QEMU cannot
    // read changes nothing. Errors: not_found (no such disk), invalid_spec (the image), conflict
    // (not a cdrom; or the guest keeps the tray locked and did not open it
    // within eject_request_wait: nothing changed; change.force opens it regardless), state.
    // The live spec's disk then names the new disc (no path: empty); event `medium-changed`.
    boost::asio::awaitable<Result<void>> change_medium(std::string disk, MediumChange change);
    boost::asio::awaitable<Result<void>> pause();
    boost::asio::awaitable<Result<void>> resume();

    // Live migration to a qshim waiting with `run --incoming`. Returns once the migration is
    // under way (its end comes as events and in migration()); errors: invalid_spec (bad
    // request), state (the VM is not running), conflict (a migration or a hotplug is under
    // way, or the VM is paused: the target runs what it receives), unsupported (post-copy,
    // multifd). While it runs, hotplug is refused (conflict), and a stop
    // cancels it first. On success QEMU is quit and wait_exit() reports `migrated`; on any
    // failure before the target was told it owns the guest, the VM runs on here as before.
    boost::asio::awaitable<Result<void>> migrate(MigrationRequest request);
    MigrationStatus migration() const;
    // Cancels the migration under way: conflict when there is none, or when it is past the
    // point where the target may already run the guest.
    boost::asio::awaitable<Result<void>> cancel_migration();

    VmState state() const;
    pid_t pid() const;
    const std::vector<std::string>& argv() const;
    const spec::VmSpec& spec() const;  // as given to the constructor
    // The live view: the spec with every device pinned where it is, plus hot-plugged devices,
    // minus unplugged ones, and hotplug counts matching the ports left. Starting a new VM from it
    // gives exactly topology() (the basis for migrating a VM after hotplug).
    const spec::VmSpec& live_spec() const;
    const topology::Topology& topology() const;  // live
    std::vector<std::string> removing() const;   // "disk/name", "interface/name" being unplugged
    // What QEMU may hold that the live state does not know (a rollback step that failed, a
    // command whose outcome is unknown): "device data", "block-node f.data", "netdev net.n1".
    // Empty when the two agree. The next hotplug or unplug first reconciles them from QEMU's lists
    // (qom-list, query-named-block-nodes) and removes what should not be there.
    std::vector<std::string> diverged() const;
    const nlohmann::json& qemu_version() const;  // from the QMP greeting
    // QEMU's threads and their CPUs, read now; empty lists before QEMU runs and after it ended.
    VmCpus cpus() const;

    // The serial console, with VmOptions::own_console: `on_output` gets what the guest writes from
    // now on, `on_end` runs once when the console ends (QEMU exited). One client at a time:
    // Errc::state while another is attached or once the VM ended; Errc::unsupported without
    // own_console. Neither callback runs after detach_console.
    Result<std::size_t> attach_console(std::function<void(std::string_view)> on_output,
                                       std::function<void()> on_end);
    void detach_console(std::size_t id);
    // Bytes for the guest, as typed on its serial port.
    boost::asio::awaitable<Result<void>> write_console(std::string bytes);

    // Lifecycle events as they happen (besides VmOptions::on_event); returns an id for unsubscribe.
    std::size_t subscribe(std::function<void(const nlohmann::json&)> sink);
    void unsubscribe(std::size_t id);

    class Impl;

  private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace qshim
