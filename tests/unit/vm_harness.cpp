// The fake-QEMU harness: a listening socket, a scripted server, and event waits for Vm tests.
#include "vm_harness.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <fstream>
#include <stdexcept>

namespace qshim::test {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::local::stream_protocol;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

TempDir::TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "qshim-vm-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
}

TempDir::~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
}

void make_image(const fs::path& path, size_t size) {
    std::ofstream(path) << std::string(size, '\0');
    const spec::RunAs qemu;
    if (geteuid() == 0 && chown(path.c_str(), qemu.uid, qemu.gid) != 0)
        throw std::runtime_error("chown to QEMU's uid failed: " + path.string());
}

FakeQemu::FakeQemu(asio::io_context& io) : io_(io), acceptor_(io) {
    const std::string socket = (dir.path / "qmp.sock").string();
    acceptor_.open(stream_protocol());
    acceptor_.bind(stream_protocol::endpoint(socket));
    acceptor_.listen(1);
    // Started as root, qshim runs the fake (as QEMU) as 107:107: hand it the folder and socket,
    // as a pod's volumes belong to QEMU's uid.
    if (geteuid() == 0) {
        const spec::RunAs qemu;
        if (chown(dir.path.c_str(), qemu.uid, qemu.gid) != 0 ||
            chown(socket.c_str(), qemu.uid, qemu.gid) != 0)
            throw std::runtime_error("chown to QEMU's uid failed");
    }
    set_env("QSHIM_FAKE_QMP", socket.c_str());
}

FakeQemu::~FakeQemu() {
    for (const auto& name : env_names_) unsetenv(name.c_str());
}

void FakeQemu::set_env(const char* name, const char* value) {
    setenv(name, value, 1);
    env_names_.emplace_back(name);
}

VmOptions FakeQemu::options() const {
    VmOptions o;
    o.command.qemu_binary = QSHIM_FAKE_QEMU;
    o.command.accel = spec::Accel::tcg;  // the fake needs no /dev/kvm
    o.start_timeout = std::chrono::milliseconds(10'000);
    o.quit_timeout = std::chrono::milliseconds(2'000);
    o.command_timeout = std::chrono::milliseconds(10'000);
    return o;
}

asio::awaitable<void> FakeQemu::serve(Script script) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
    if (ec) co_return;
    server_ = std::make_unique<FakeServer>(io_, socket.release(), std::move(script));
    co_await server_->run();
}

EventLog::EventLog(const asio::any_io_executor& ex)
    : wake_(ex, asio::steady_timer::time_point::max()) {}

void EventLog::operator()(const nlohmann::json& event) {
    events_.push_back(event);
    wake_.cancel();
}

const nlohmann::json* EventLog::find(const std::string& name) const {
    for (const auto& e : events_)
        if (e.value("event", "") == name) return &e;
    return nullptr;
}

bool EventLog::has(const std::string& name) const { return find(name) != nullptr; }

std::vector<std::string> EventLog::names() const {
    std::vector<std::string> out;
    for (const auto& e : events_) out.push_back(e.value("event", ""));
    return out;
}

asio::awaitable<bool> EventLog::wait_for(std::string name, Duration timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!has(name)) {
        if (std::chrono::steady_clock::now() >= deadline) co_return false;
        asio::steady_timer limit(wake_.get_executor(), deadline);
        using namespace asio::experimental::awaitable_operators;
        co_await (wake_.async_wait(use_tuple) || limit.async_wait(use_tuple));
        wake_.expires_at(asio::steady_timer::time_point::max());
    }
    co_return true;
}

PlannedVm plan_vm(const std::string& yaml, const std::string& base_dir) {
    auto spec = spec::parse_spec(yaml, base_dir + "/vm.yaml");
    if (!spec) throw std::runtime_error("test spec: " + spec.error().what());
    auto topo = topology::plan(*spec);
    if (!topo) throw std::runtime_error("test topology: " + topo.error().what());
    return {std::move(*spec), std::move(*topo)};
}

Json qom_children(const topology::Topology& topology, const std::vector<std::string>& extra) {
    Json list = Json::array();
    auto child = [&list](const std::string& id) {
        list.push_back({{"name", id}, {"type", "child<device>"}});
    };
    list.push_back({{"name", "type"}, {"type", "string"}});
    for (const auto& c : topology.controllers) child(c.id);
    for (const auto& d : topology.devices) child(d.id);
    for (const auto& id : extra) child(id);
    return list;
}

Json vcpu_threads(unsigned count) {
    Json list = Json::array();
    for (unsigned i = 0; i < count; ++i)
        list.push_back({{"cpu-index", i}, {"thread-id", 1}, {"qom-path", "/machine/unattached"}});
    return list;
}

Script boot(const topology::Topology& topology) {
    return handshake() + Script{steps::expect("qom-list", qom_children(topology)),
                                steps::expect("query-cpus-fast", vcpu_threads(1)),
                                steps::expect("query-iothreads", Json::array()),
                                steps::expect("cont"), steps::event("RESUME")};
}

Script graceful_stop() {
    return {steps::expect("system_powerdown"),
            steps::event("SHUTDOWN", {{"guest", true}, {"reason", "guest-shutdown"}}),
            steps::close()};
}

bool ends_cleanly(asio::io_context& io, Vm& vm, FakeQemu& qemu, const EventLog& events,
                  asio::awaitable<void> driver) {
    VmExit exit;
    bool ran = run_test(io, [&]() -> asio::awaitable<void> {
        auto started = co_await vm.start();
        require_ok(started);
        co_await std::move(driver);
        vm.request_stop();
        exit = co_await vm.wait_exit();
    }());
    INFO(fmt::format("events: {}", fmt::join(events.names(), " ")));
    CHECK(qemu.server()->failures().empty());
    return ran && exit.reason == VmExit::Reason::stopped;
}

bool run_test(asio::io_context& io, asio::awaitable<void> driver, Duration bound) {
    bool done = false;
    std::exception_ptr failure;
    asio::co_spawn(io, std::move(driver), [&](std::exception_ptr e) {
        done = true;
        failure = e;
    });
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (!done && std::chrono::steady_clock::now() < deadline && !io.stopped())
        io.run_one_for(std::chrono::milliseconds(100));
    // Let what the driver left (a server closing, a reaped child) finish, without waiting on it.
    io.poll();
    if (failure) std::rethrow_exception(failure);
    return done;
}

}  // namespace qshim::test
