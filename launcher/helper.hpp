// The processes qshim starts beside QEMU to serve its devices (qemu-storage-daemon for a disk,
// ...): one mechanism for all. Each is sandboxed like QEMU, its output logged under its name, its
// readiness (its socket listening) awaited with a deadline, its death reported, and it is stopped
// after QEMU. docs/helpers.md.
#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <qshim/error.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/async_event.hpp"
#include "launcher/process.hpp"
#include "launcher/sandbox.hpp"

namespace qshim::launcher::detail {

// One helper, planned from the spec before anything starts (helper_plan.hpp).
struct HelperSpec {
    std::string name;    // "qsd-data": unique in the VM; names it in logs and events
    std::string device;  // the spec entry it serves: "disks[data]"
    std::vector<std::string> argv;
    // A folder of its own, made for it at start (0700, given to its uid) and removed when it
    // stops, where it creates its socket: the state directory itself is not writable by the
    // sandboxed uid (docs/helpers.md).
    std::string dir;
    std::string socket;   // ready once a unix socket listens at this path (in `dir`)
    std::string package;  // the Debian package that installs argv[0]
    // qshim makes the listening socket at `socket` itself and hands it over as fd 3 (for a
    // helper that cannot create it: virtiofsd wants a lock file in /run otherwise). It is then
    // ready once a line of its output contains `ready_line`.
    bool socket_from_qshim = false;
    std::string ready_line;
    // It installs a seccomp filter of its own and needs calls qshim's deny-list forbids (passt
    // unshares namespaces): qshim's filter is left out, the rest of the sandbox stays.
    bool sandboxes_itself = false;
    // It builds a sandbox of its own inside namespaces qshim gives it (own_namespaces_plan in
    // sandbox.hpp), with `read_only_bind` made read-only there; implies sandboxes_itself.
    bool own_namespaces = false;
    std::string read_only_bind;
};

// Whether a unix socket listens at `path`, from the text of /proc/net/unix: a line whose path
// is `path` with the __SO_ACCEPTCON flag (listen() was called). Reading the table, unlike
// connecting, never disturbs a server that serves one connection only.
bool listening_in(std::string_view proc_net_unix, std::string_view path);

class Helper : public std::enable_shared_from_this<Helper> {
  public:
    Helper(boost::asio::any_io_executor ex, HelperSpec spec);
    ~Helper();
    Helper(const Helper&) = delete;
    Helper& operator=(const Helper&) = delete;

    // Spawns it under `sandbox`, logs what it prints, and waits until its socket listens. It
    // exiting first, or `timeout` passing, is an error naming it, with its status and last
    // lines (and it is killed and reaped). `on_exit` is called if it exits later on its own.
    // The arguments are references to named values that outlive the call: g++ 12 destroys a
    // temporary passed by value into a co_await twice.
    boost::asio::awaitable<Result<void>> start(const SandboxPlan& sandbox,
                                               const std::vector<unsigned>& affinity,
                                               std::chrono::milliseconds timeout,
                                               const std::function<void(int status)>& on_exit);

    // SIGTERM, then SIGKILL once `grace` passed; returns when it is reaped. Its socket and
    // folder are removed. Idempotent; a helper that never started returns at once.
    boost::asio::awaitable<void> stop(std::chrono::milliseconds grace);

    // Kills it now without waiting (qshim is going away: ~Vm).
    void kill();

    const HelperSpec& spec() const { return spec_; }
    pid_t pid() const { return child_.pid; }
    bool running() const { return child_.pid > 0 && !exited_.is_set(); }
    // "exited with status 1"; empty while it runs.
    const std::string& description() const { return description_; }

  private:
    static boost::asio::awaitable<void> read_output(std::shared_ptr<Helper> self);
    static boost::asio::awaitable<void> watch_exit(std::shared_ptr<Helper> self);
    boost::asio::awaitable<Result<void>> wait_listening(std::chrono::milliseconds timeout);
    std::string failure(const std::string& why) const;
    Result<void> make_dir(const SandboxPlan& sandbox) const;
    void remove_dir() const;

    boost::asio::any_io_executor ex_;
    HelperSpec spec_;
    Child child_;
    boost::asio::posix::stream_descriptor exit_watch_;
    boost::asio::posix::stream_descriptor output_;
    qshim::detail::AsyncEvent exited_;
    qshim::detail::AsyncEvent drained_;
    int status_ = 0;
    std::string description_;
    bool stopping_ = false;
    bool ready_line_seen_ = false;
    std::function<void(int)> on_exit_;
    std::deque<std::string> tail_;
};

}  // namespace qshim::launcher::detail
