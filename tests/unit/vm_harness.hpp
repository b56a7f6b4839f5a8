// Running a real Vm against the fake QEMU (tests/unit/fake_qemu.cpp) and a scripted QMP server.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <memory>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <qshim/vm.hpp>
#include <string>
#include <vector>

#include "qmp_fake_server.hpp"

namespace qshim::test {

// A private folder, removed at the end.
struct TempDir {
    std::filesystem::path path;
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

// A file of `size` zero bytes in `dir`, owned by QEMU's uid when the tests run as root (qshim
// then runs QEMU, here the fake, as 107:107 and checks its images as that uid).
void make_image(const std::filesystem::path& path, size_t size = 4096);

// The fake QEMU's side of a test: the socket it connects to and the script played there. The
// fake QEMU finds the socket through $QSHIM_FAKE_QMP, set while this object lives (the Vm
// passes its own environment to the process it spawns).
class FakeQemu {
  public:
    explicit FakeQemu(boost::asio::io_context& io);
    ~FakeQemu();

    // VmOptions that spawn the fake instead of QEMU, with short deadlines for tests.
    VmOptions options() const;
    // Accepts the fake QEMU's connection and plays `script` on it.
    boost::asio::awaitable<void> serve(Script script);
    // The server once serve() has accepted; null before.
    FakeServer* server() { return server_.get(); }
    // Extra environment for the fake (QSHIM_FAKE_STAY, QSHIM_FAKE_IGNORE_TERM, ...).
    void set_env(const char* name, const char* value);

    TempDir dir;

  private:
    boost::asio::io_context& io_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    std::unique_ptr<FakeServer> server_;
    std::vector<std::string> env_names_;
};

// Lifecycle events a Vm emitted, and waits for one by name.
class EventLog {
  public:
    explicit EventLog(const boost::asio::any_io_executor& ex);
    void operator()(const nlohmann::json& event);
    bool has(const std::string& name) const;
    const nlohmann::json* find(const std::string& name) const;
    std::vector<std::string> names() const;
    // True once an event of that name has arrived (before or during the wait).
    boost::asio::awaitable<bool> wait_for(std::string name, Duration timeout);

  private:
    std::vector<nlohmann::json> events_;
    boost::asio::steady_timer wake_;
};

struct PlannedVm {
    spec::VmSpec spec;
    topology::Topology topology;
};
PlannedVm plan_vm(const std::string& yaml, const std::string& base_dir = "/tmp");

// What `qom-list /machine/peripheral` answers for a VM with this topology (plus `extra` ids).
Json qom_children(const topology::Topology& topology, const std::vector<std::string>& extra = {});
// What `query-cpus-fast` answers for `count` vCPUs (thread id 1: the test VMs pin nothing, so it
// is only reported, never placed).
Json vcpu_threads(unsigned count);
// The QMP conversation of a start: greeting, capabilities, the plan check, cont and RESUME.
Script boot(const topology::Topology& topology);
// What a stop that the guest honours looks like: the button, SHUTDOWN (guest), QEMU exits.
Script graceful_stop();

// Runs `driver` and whatever else is queued on `io` until the driver is done (or `bound`
// passes). True when the driver finished.
bool run_test(boost::asio::io_context& io, boost::asio::awaitable<void> driver,
              Duration bound = Duration(30'000));

// Starts `vm`, runs `driver`, then stops the VM (the guest honours the button: graceful_stop()).
// True when the driver ran to its end and the VM stopped as asked; checks that the fake QEMU's
// script went to plan, and names the events the VM emitted when it did not.
bool ends_cleanly(boost::asio::io_context& io, Vm& vm, FakeQemu& qemu, const EventLog& events,
                  boost::asio::awaitable<void> driver);

}  // namespace qshim::test
