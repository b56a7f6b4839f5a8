// The Vm's lifecycle against the fake QEMU: start, plan check, every stop path, QMP lost.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <catch2/catch.hpp>
#include <csignal>

#include "fake_root.hpp"
#include "launcher/cpu_placement.hpp"
#include "launcher/lifecycle.hpp"
#include "vm_harness.hpp"

using namespace qshim;
using namespace qshim::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace s = qshim::test::steps;
using launcher::detail::Input;
using launcher::detail::Phase;

namespace {

struct Fixture {
    asio::io_context io;
    FakeQemu qemu{io};
    EventLog events{io.get_executor()};
    PlannedVm planned = plan_vm("name: t\n");

    std::unique_ptr<Vm> make_vm(VmOptions options) {
        options.on_event = [this](const nlohmann::json& e) { events(e); };
        return std::make_unique<Vm>(io.get_executor(), planned.spec, planned.topology, options);
    }
    std::unique_ptr<Vm> make_vm() { return make_vm(qemu.options()); }
    void serve(Script script) { asio::co_spawn(io, qemu.serve(std::move(script)), asio::detached); }
};

}  // namespace

TEST_CASE("the transition table: stops, losses and exits map to one reason each") {
    using launcher::detail::exit_reason;
    using launcher::detail::next_phase;
    using R = VmExit::Reason;
    CHECK(next_phase(Phase::created, Input::spawned) == Phase::starting);
    CHECK(next_phase(Phase::starting, Input::resumed) == Phase::running);
    CHECK(next_phase(Phase::running, Input::stopped) == Phase::paused);
    CHECK(next_phase(Phase::paused, Input::resumed) == Phase::running);
    CHECK(next_phase(Phase::running, Input::stop) == Phase::powering_down);
    CHECK(next_phase(Phase::paused, Input::stop) == Phase::quitting);    // cannot press a button
    CHECK(next_phase(Phase::starting, Input::stop) == Phase::aborting);  // the guest never ran
    CHECK(next_phase(Phase::powering_down, Input::grace_expired) == Phase::forcing);
    CHECK(next_phase(Phase::running, Input::qmp_lost) == Phase::qmp_lost);
    CHECK(next_phase(Phase::qmp_lost, Input::stop) == Phase::signalling);
    CHECK(next_phase(Phase::powering_down, Input::qmp_lost) == Phase::signalling);
    // `quit` closes QMP: that is the expected end, not a loss.
    CHECK_FALSE(next_phase(Phase::quitting, Input::qmp_lost));
    CHECK_FALSE(next_phase(Phase::forcing, Input::qmp_lost));
    // A second stop changes nothing; neither do events after the end.
    CHECK_FALSE(next_phase(Phase::powering_down, Input::stop));
    CHECK_FALSE(next_phase(Phase::exited, Input::exited));
    CHECK_FALSE(next_phase(Phase::exited, Input::resumed));
    for (Phase p : {Phase::created, Phase::starting, Phase::running, Phase::paused, Phase::qmp_lost,
                    Phase::guest_stopping, Phase::powering_down, Phase::aborting, Phase::quitting,
                    Phase::forcing, Phase::signalling})
        CHECK(next_phase(p, Input::exited) == Phase::exited);
    CHECK(exit_reason(Phase::running) == R::crashed);
    CHECK(exit_reason(Phase::guest_stopping) == R::guest_shutdown);
    CHECK(exit_reason(Phase::powering_down) == R::stopped);
    CHECK(exit_reason(Phase::quitting) == R::stopped);
    CHECK(exit_reason(Phase::forcing) == R::forced);
    CHECK(exit_reason(Phase::qmp_lost) == R::qmp_lost);
    CHECK(exit_reason(Phase::signalling) == R::qmp_lost);
    CHECK(exit_reason(Phase::starting) == R::launch_failed);
    // Killed on purpose before anything ran: the stop that was asked, whatever the status.
    CHECK(exit_reason(Phase::aborting, false) == R::stopped);
    // quit unanswered: the SIGKILL that follows is force.
    CHECK(next_phase(Phase::quitting, Input::grace_expired) == Phase::forcing);
    CHECK(next_phase(Phase::guest_stopping, Input::qmp_lost) == Phase::qmp_lost);
    // A stop or power-off counts only if QEMU exited 0.
    CHECK(exit_reason(Phase::powering_down, false) == R::crashed);
    CHECK(exit_reason(Phase::guest_stopping, false) == R::crashed);
    CHECK(exit_reason(Phase::forcing, false) == R::forced);
    CHECK(exit_reason(Phase::qmp_lost, false) == R::qmp_lost);
}

TEST_CASE("start checks the plan, runs, and a graceful stop ends as stopped") {
    Fixture f;
    auto vm = f.make_vm();
    f.serve(boot(f.planned.topology) + graceful_stop());
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        auto started = co_await vm->start();
        require_ok(started);
        CHECK(vm->state() == VmState::running);
        CHECK(vm->pid() > 0);
        vm->request_stop();
        CHECK(vm->state() == VmState::stopping);
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::stopped);
    CHECK(exit.description == "exited with status 0");
    CHECK(vm->state() == VmState::exited);
    auto names = f.events.names();
    INFO(fmt::format("{}", fmt::join(names, " ")));
    CHECK(names == std::vector<std::string>{"spec-accepted", "qemu-started", "qmp-connected",
                                            "running", "shutdown-requested", "guest-shutdown",
                                            "exited"});
    CHECK(f.qemu.server()->failures().empty());
}

TEST_CASE("a guest that powers off by itself ends as guest-shutdown") {
    Fixture f;
    auto vm = f.make_vm();
    f.serve(
        boot(f.planned.topology) +
        Script{s::event("SHUTDOWN", {{"guest", true}, {"reason", "guest-shutdown"}}), s::close()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::guest_shutdown);
}

TEST_CASE("QEMU missing a planned device is a launch failure, and QEMU is gone") {
    Fixture f;
    auto vm = f.make_vm();
    Json partial = qom_children(topology::Topology{});  // none of the planned ids
    f.serve(handshake() + Script{s::expect("qom-list", partial), s::wait_closed()});
    VmExit exit;
    Result<void> started;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        started = co_await vm->start();
        exit = co_await vm->wait_exit();
    }()));
    REQUIRE_FALSE(started.ok());
    CHECK(started.error().code == Errc::launch);
    CHECK(started.error().what().find("did not create the planned devices") != std::string::npos);
    CHECK(exit.reason == VmExit::Reason::launch_failed);
    CHECK(f.events.has("error"));
}

TEST_CASE("a guest that ignores the button is forced: quit, and kill when quit is not answered") {
    Fixture f;
    auto vm = f.make_vm();
    bool answer_quit = GENERATE(true, false);
    INFO((answer_quit ? "quit answered" : "quit never answered"));
    Script tail{s::expect("system_powerdown")};
    if (answer_quit) {
        tail.push_back(s::expect("quit"));
        tail.push_back(s::event("SHUTDOWN", {{"guest", false}, {"reason", "host-qmp-quit"}}));
        tail.push_back(s::close());
    } else {
        tail.push_back(s::hold("quit"));
        tail.push_back(s::wait_closed());
    }
    f.serve(boot(f.planned.topology) + tail);
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        vm->request_stop(std::chrono::milliseconds(200));
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::forced);
    CHECK(f.events.has("forcing-stop"));
    if (!answer_quit) CHECK(exit.description.find("signal 9") != std::string::npos);
}

TEST_CASE("a paused VM, or one stopped with no grace period, is quit: that is a stop") {
    Fixture f;
    auto vm = f.make_vm();
    f.serve(boot(f.planned.topology) +
            Script{s::expect("stop"), s::event("STOP"), s::expect("quit"), s::close()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        require_ok(co_await vm->pause());
        bool paused = co_await f.events.wait_for("paused", 10s);
        CHECK(paused);
        CHECK(vm->state() == VmState::paused);
        vm->request_stop();
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::stopped);
}

TEST_CASE("a stop before start ends the VM without QEMU; start is then refused") {
    Fixture f;
    auto vm = f.make_vm();
    VmExit exit;
    Result<void> started;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        vm->request_stop();
        exit = co_await vm->wait_exit();
        started = co_await vm->start();
    }()));
    CHECK(exit.reason == VmExit::Reason::stopped);
    CHECK(exit.description == "not started");
    REQUIRE_FALSE(started.ok());
    CHECK(started.error().code == Errc::state);
}

TEST_CASE("a stop while QEMU starts kills it at once: a stop, not a launch failure") {
    Fixture f;
    auto vm = f.make_vm();
    const std::string when = GENERATE("before the greeting", "during the plan check");
    INFO(when);
    // QEMU never greets, or never answers the plan check: only the stop can end this start.
    if (when == "before the greeting")
        f.serve({s::wait_closed()});
    else
        f.serve(handshake() + Script{s::hold("qom-list"), s::wait_closed()});
    VmExit exit;
    std::optional<Result<void>> started;
    auto stop_once_reached = [&]() -> asio::awaitable<void> {
        bool reached = co_await f.events.wait_for(
            when == "before the greeting" ? "qemu-started" : "qmp-connected", 10s);
        REQUIRE(reached);
        vm->request_stop();
    };
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        using namespace asio::experimental::awaitable_operators;
        started = co_await (vm->start() && stop_once_reached());
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::stopped);
    CHECK(exit.description.find("signal 9") != std::string::npos);  // killed, not asked
    REQUIRE(started.has_value());
    REQUIRE_FALSE(started->ok());
    CHECK(started->error().code == Errc::state);
    INFO(fmt::format("{}", f.events.names()));
    CHECK_FALSE(f.events.has("running"));
    CHECK_FALSE(f.events.has("error"));         // nothing failed
    CHECK_FALSE(f.events.has("forcing-stop"));  // and nothing was forced
    CHECK(f.events.has("shutdown-requested"));
}

TEST_CASE("losing QMP is a state with an event; a stop then goes on by signals, never exit 0") {
    Fixture f;
    f.qemu.set_env("QSHIM_FAKE_STAY", "1");  // the fake lives on after its monitor breaks
    auto options = f.qemu.options();
    options.quit_timeout = 1s;
    auto vm = f.make_vm(options);
    const std::string how = GENERATE("garbage", "oversized", "closed");
    INFO(how);
    Script fault;
    if (how == "garbage") fault = {s::garbage(), s::wait_closed()};
    if (how == "oversized")  // over the client's 10 MiB bound, on one line
        fault = {s::send(std::string((10u << 20) + 16, 'x') + "\r\n", "huge"), s::wait_closed()};
    if (how == "closed") fault = {s::close()};  // QEMU's monitor ends, QEMU runs on
    const bool ignore_term = how == "closed";
    if (ignore_term) f.qemu.set_env("QSHIM_FAKE_IGNORE_TERM", "1");  // then SIGKILL must follow
    f.serve(boot(f.planned.topology) + fault);
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        bool lost = co_await f.events.wait_for("qmp-lost", 20s);
        REQUIRE(lost);
        CHECK(vm->state() == VmState::qmp_lost);
        auto paused = co_await vm->pause();
        REQUIRE_FALSE(paused.ok());
        CHECK(paused.error().code == Errc::state);
        spec::Disk disk;
        disk.name = "late";
        auto added = co_await vm->add_disk(disk);
        REQUIRE_FALSE(added.ok());
        CHECK(added.error().code == Errc::state);
        vm->request_stop();
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::qmp_lost);
    const auto* term = f.events.find("forcing-stop");
    REQUIRE(term);
    CHECK((*term)["step"] == "term");
    if (ignore_term)
        CHECK(exit.description.find("signal 9") != std::string::npos);
    else
        CHECK(exit.description == "exited with status 0");
    const auto* lost = f.events.find("qmp-lost");
    CHECK(!(*lost)["reason"].get<std::string>().empty());
}

TEST_CASE("QMP lost while the guest powers down: the grace period ends early, by signals") {
    Fixture f;
    f.qemu.set_env("QSHIM_FAKE_STAY", "1");
    auto vm = f.make_vm();
    f.serve(boot(f.planned.topology) +
            Script{s::expect("system_powerdown"), s::garbage(), s::wait_closed()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        vm->request_stop(std::chrono::hours(1));  // only losing QMP can end this stop early
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::qmp_lost);
    CHECK(f.events.has("qmp-lost"));
}

TEST_CASE("QEMU that stops answering: commands time out with clear errors, a stop still ends it") {
    Fixture f;
    auto options = f.qemu.options();
    options.command_timeout = 300ms;
    auto vm = f.make_vm(options);
    f.serve(boot(f.planned.topology) + Script{s::hold("stop"), s::hold("system_powerdown"),
                                              s::hold("quit"), s::wait_closed()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        auto paused = co_await vm->pause();
        REQUIRE_FALSE(paused.ok());
        CHECK(paused.error().code == Errc::timeout);
        CHECK(paused.error().what().find("stop") != std::string::npos);
        vm->request_stop(500ms);
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::forced);
    CHECK(exit.description.find("signal 9") != std::string::npos);
}

TEST_CASE("an event sink that throws never keeps wait_exit from completing") {
    Fixture f;
    auto options = f.qemu.options();
    options.on_event = [](const nlohmann::json&) { throw std::runtime_error("sink failed"); };
    Vm vm(f.io.get_executor(), f.planned.spec, f.planned.topology, options);
    vm.subscribe([](const nlohmann::json&) { throw 42; });
    f.serve(boot(f.planned.topology) + graceful_stop());
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm.start());
        vm.request_stop();
        exit = co_await vm.wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::stopped);
}

TEST_CASE(
    "a stop while the monitor is already gone is a QMP loss, ended by signals, never exit 0") {
    Fixture f;
    f.qemu.set_env("QSHIM_FAKE_STAY", "1");
    auto options = f.qemu.options();
    options.quit_timeout = 1s;
    auto vm = f.make_vm(options);
    f.serve(boot(f.planned.topology) + Script{s::close()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        vm->request_stop();  // whether or not the close was read yet
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::qmp_lost);
    CHECK(f.events.has("qmp-lost"));
    const auto* term = f.events.find("forcing-stop");
    REQUIRE(term);
    CHECK((*term)["step"] == "term");
}

TEST_CASE("QEMU dying during a requested stop is a crash, not a clean stop") {
    Fixture f;
    f.qemu.set_env("QSHIM_FAKE_CRASH", "1");  // aborts when the server closes
    auto vm = f.make_vm();
    f.serve(boot(f.planned.topology) + Script{s::expect("system_powerdown"), s::close()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        vm->request_stop(std::chrono::hours(1));
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::crashed);
    CHECK(exit.description.find("signal 6") != std::string::npos);
}

TEST_CASE("a paused VM whose QEMU does not answer quit is killed: that is a forced stop") {
    Fixture f;
    auto vm = f.make_vm();
    f.serve(boot(f.planned.topology) +
            Script{s::expect("stop"), s::event("STOP"), s::hold("quit"), s::wait_closed()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        require_ok(co_await vm->pause());
        bool paused = co_await f.events.wait_for("paused", 10s);
        REQUIRE(paused);
        vm->request_stop();
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::forced);
    CHECK(exit.description.find("signal 9") != std::string::npos);
}

TEST_CASE("QMP lost after the guest powered off: a stop still ends QEMU, by signals") {
    Fixture f;
    f.qemu.set_env("QSHIM_FAKE_STAY", "1");
    auto vm = f.make_vm();
    f.serve(boot(f.planned.topology) +
            Script{s::event("SHUTDOWN", {{"guest", true}, {"reason", "guest-shutdown"}}),
                   s::garbage(), s::wait_closed()});
    VmExit exit;
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        bool lost = co_await f.events.wait_for("qmp-lost", 20s);
        REQUIRE(lost);
        vm->request_stop();
        exit = co_await vm->wait_exit();
    }()));
    CHECK(exit.reason == VmExit::Reason::qmp_lost);
}

TEST_CASE("an embedder may drop the Vm from its own event sink while another call waits") {
    Fixture f;
    auto options = f.qemu.options();
    std::unique_ptr<Vm> vm;
    options.on_event = [&vm](const nlohmann::json& e) {
        if (e.value("event", "") == "exited") vm.reset();  // the owner lets go at the end
    };
    vm = std::make_unique<Vm>(f.io.get_executor(), f.planned.spec, f.planned.topology, options);
    f.serve(boot(f.planned.topology) + graceful_stop());
    VmExit exit;
    bool waited = false;
    asio::steady_timer waiter_done(f.io, asio::steady_timer::time_point::max());
    auto waiter = vm->wait_exit();  // taken before the Vm goes
    asio::co_spawn(
        f.io,
        [&, w = std::move(waiter)]() mutable -> asio::awaitable<void> {
            exit = co_await std::move(w);
            waited = true;
            waiter_done.cancel();
        },
        asio::detached);
    REQUIRE(run_test(f.io, [&]() -> asio::awaitable<void> {
        require_ok(co_await vm->start());
        vm->request_stop();
        if (!waited) co_await waiter_done.async_wait(asio::as_tuple(asio::use_awaitable));
    }()));
    CHECK(waited);
    CHECK(vm == nullptr);
    CHECK(exit.reason == VmExit::Reason::stopped);
}

TEST_CASE("what the host cannot give starts nothing: huge pages, a cpuset too small",
          "[placement]") {
    qshim::test::FakeRoot fake;
    fake.write("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "4");
    fake.write("/proc/self/mountinfo",
               "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    fake.write("/proc/self/cgroup", "0::/pod\n");
    fake.write("/sys/fs/cgroup/pod/cpuset.cpus.effective", "3");
    fake.write("/sys/fs/cgroup/pod/cpuset.mems.effective", "0");
    fake.write("/sys/devices/system/cpu/online", "0-3");
    fake.write("/proc/meminfo", "MemTotal:        8000000 kB");
    struct Case {
        const char* yaml;
        const char* says;
    } cases[] = {
        {"name: t\nmemory: {size: 64Mi, hugepages: 2Mi}\n",
         "memory.hugepages: the guest needs 32 huge pages of 2 MiB, and the host has 4 free"},
        {"name: t\nmemory: {size: 1Gi, hugepages: 1Gi}\n", "this kernel has no 1Gi huge pages"},
        {"name: t\ncpu: {cores: 2, dedicated: true}\n",
         "cpu.dedicated: the VM needs 2 host CPUs (2 vCPUs), but qshim's cpuset 3"},
    };
    for (const auto& c : cases) {
        INFO(c.yaml);
        Fixture f;
        f.planned = plan_vm(c.yaml);
        VmOptions options = f.qemu.options();
        options.system_root = fake.path.string();
        auto vm = f.make_vm(options);
        Result<void> started;
        REQUIRE(
            run_test(f.io, [&]() -> asio::awaitable<void> { started = co_await vm->start(); }()));
        REQUIRE_FALSE(started.ok());
        CHECK_THAT(started.error().what(), Catch::Contains(c.says));
        CHECK(vm->pid() <= 0);
        CHECK_FALSE(f.events.has("qemu-started"));
        CHECK(f.events.has("error"));
        CHECK(vm->state() == VmState::exited);
    }
}

TEST_CASE("the placement state machine", "[placement]") {
    using launcher::detail::next_state;
    using launcher::detail::PlacementInput;
    using launcher::detail::PlacementState;
    CHECK(next_state(PlacementState::placed, PlacementInput::impossible) == PlacementState::failed);
    CHECK(next_state(PlacementState::failed, PlacementInput::applied) == PlacementState::placed);
    CHECK(next_state(PlacementState::placed, PlacementInput::applied) == PlacementState::placed);
    // A VM that pins nothing never becomes pinned.
    CHECK(next_state(PlacementState::unpinned, PlacementInput::applied) ==
          PlacementState::unpinned);
}
