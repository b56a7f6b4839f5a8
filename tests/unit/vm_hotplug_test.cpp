// Hotplug transactions against the fake QEMU: every rollback path, late completions, reconciling.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>
#include <fstream>

#include "vm_harness.hpp"

using namespace qshim;
using namespace qshim::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace s = qshim::test::steps;

namespace {

struct Fixture {
    asio::io_context io;
    FakeQemu qemu{io};
    EventLog events{io.get_executor()};
    PlannedVm planned;
    std::unique_ptr<Vm> vm;

    explicit Fixture(std::chrono::milliseconds command_timeout = 10s,
                     const std::string& spec = "name: t\n")
        : planned(plan_vm(spec, qemu.dir.path.string())) {
        for (const char* name : {"one.raw", "two.raw"}) make_image(qemu.dir.path / name);
        auto options = qemu.options();
        options.command_timeout = command_timeout;
        options.on_event = [this](const nlohmann::json& e) { events(e); };
        vm = std::make_unique<Vm>(io.get_executor(), planned.spec, planned.topology, options);
    }
    void serve(Script script) {
        asio::co_spawn(io, qemu.serve(boot(planned.topology) + script + graceful_stop()),
                       asio::detached);
    }
    spec::Disk disk(const std::string& name) {
        auto d = spec::parse_disk(
            fmt::format(R"({{"name": "{}", "path": "{}.raw", "format": "raw"}})", name, name),
            vm->live_spec());
        if (!d) throw std::runtime_error(d.error().what());
        return *d;
    }
    spec::Interface nic(const std::string& name) {
        auto n = spec::parse_interface(
            fmt::format(R"({{"name": "{}", "backend": {{"type": "user"}}}})", name),
            vm->live_spec());
        if (!n) throw std::runtime_error(n.error().what());
        return *n;
    }
    // The commands the fake QEMU received, by name, after the boot.
    std::vector<std::string> commands() {
        std::vector<std::string> out;
        for (const auto& c : qemu.server()->commands()) out.push_back(c.value("execute", ""));
        return out;
    }
    bool ends_cleanly(asio::awaitable<void> driver) {
        return test::ends_cleanly(io, *vm, qemu, events, std::move(driver));
    }
};

bool contains(const std::vector<std::string>& list, const std::string& item) {
    return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

TEST_CASE("a disk hotplug adds backend then device; unplug removes device then backend") {
    Fixture f;
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"), s::expect("device_add"),
             s::expect("device_del"), s::event("DEVICE_DELETED", {{"device", "one"}}),
             s::expect("blockdev-del"), s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto placed = co_await f.vm->add_disk(f.disk("one"));
        require_ok(placed);
        CHECK(placed->address == spec::PciAddress{0, 1, 0, 0});
        CHECK(f.vm->live_spec().disks.size() == 1);
        require_ok(co_await f.vm->remove_disk("one", 10s));
        CHECK(f.vm->live_spec().disks.empty());
        CHECK(f.vm->diverged().empty());
    }()));
    CHECK(f.events.has("device-added"));
    CHECK(f.events.has("device-removed"));
}

TEST_CASE("QEMU refusing an image is invalid input with QEMU's class, and nothing to undo") {
    Fixture f;
    f.serve({s::expect_error("blockdev-add", "GenericError", "Could not open 'one.raw'")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto placed = co_await f.vm->add_disk(f.disk("one"));
        REQUIRE_FALSE(placed.ok());
        CHECK(placed.error().code == Errc::invalid_spec);
        CHECK(placed.error().qmp_class == "GenericError");
        CHECK(placed.error().what().find("Could not open") != std::string::npos);
        CHECK(f.vm->live_spec().disks.empty());
    }()));
    CHECK(f.commands() == std::vector<std::string>{"qmp_capabilities", "qom-list",
                                                   "query-cpus-fast", "query-iothreads", "cont",
                                                   "blockdev-add", "system_powerdown"});
}

TEST_CASE("a failing device_add is rolled back newest first and keeps QEMU's class") {
    Fixture f;
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"),
             s::expect_error("device_add", "GenericError", "Bus 'rp.disks.0' is full"),
             s::expect("blockdev-del"), s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto placed = co_await f.vm->add_disk(f.disk("one"));
        REQUIRE_FALSE(placed.ok());
        CHECK(placed.error().code == Errc::qmp);
        CHECK(placed.error().qmp_class == "GenericError");
        CHECK(f.vm->diverged().empty());
    }()));
    auto& sent = f.qemu.server()->commands();
    // b.one (format) goes before f.one (file).
    CHECK(sent[sent.size() - 3]["arguments"]["node-name"] == "b.one");
    CHECK(sent[sent.size() - 2]["arguments"]["node-name"] == "f.one");
    CHECK_FALSE(f.events.has("diverged"));
}

TEST_CASE(
    "a failing netdev_add ends the NIC hotplug; a failing NIC device_add removes the netdev") {
    Fixture f;
    f.serve({s::expect_error("netdev_add", "GenericError", "Duplicate ID"), s::expect("netdev_add"),
             s::expect_error("device_add", "GenericError", "no slot"), s::expect("netdev_del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto first = co_await f.vm->add_interface(f.nic("n1"));
        REQUIRE_FALSE(first.ok());
        CHECK(first.error().code == Errc::invalid_spec);
        CHECK(first.error().qmp_class == "GenericError");
        auto second = co_await f.vm->add_interface(f.nic("n1"));
        REQUIRE_FALSE(second.ok());
        CHECK(second.error().code == Errc::qmp);
        CHECK(f.vm->live_spec().interfaces.empty());
        CHECK(f.vm->diverged().empty());
    }()));
}

TEST_CASE("a rollback step that fails is reported, listed as diverged, and reconciled later") {
    Fixture f;
    Json with_nodes = Json::array();
    with_nodes.push_back({{"node-name", "b.one"}});
    with_nodes.push_back({{"node-name", "f.one"}});
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"),
             s::expect_error("device_add", "GenericError", "no"),
             s::expect_error("blockdev-del", "GenericError", "Node 'b.one' is busy"),
             s::expect_error("blockdev-del", "GenericError", "Node 'f.one' is busy"),
             // The next change reconciles first: both nodes are still there; now they go.
             s::expect("qom-list", qom_children(f.planned.topology)),
             s::expect("query-named-block-nodes", with_nodes), s::expect("blockdev-del"),
             s::expect("blockdev-del"), s::expect("blockdev-add"), s::expect("blockdev-add"),
             s::expect("device_add")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto placed = co_await f.vm->add_disk(f.disk("one"));
        REQUIRE_FALSE(placed.ok());
        CHECK(f.vm->diverged() == std::vector<std::string>{"block-node b.one", "block-node f.one"});
        auto again = co_await f.vm->add_disk(f.disk("one"));
        require_ok(again);
        CHECK(f.vm->diverged().empty());
    }()));
    const auto* diverged = f.events.find("diverged");
    REQUIRE(diverged);
    CHECK((*diverged)["objects"].size() == 2);
    CHECK(f.events.has("reconciled"));
}

TEST_CASE("a device_add that times out and completes late is cleaned up on the next change") {
    Fixture f(300ms);
    // QEMU answers nothing until the deadline passed: device_add, then the rollback's device_del
    // (accepted: the device exists now) and blockdev-dels (refused: the device uses the nodes).
    Json late_nodes = Json::array();
    late_nodes.push_back({{"node-name", "b.one"}});
    late_nodes.push_back({{"node-name", "f.one"}});
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"), s::hold("device_add"),
             s::expect("device_del"),
             s::expect_error("blockdev-del", "GenericError", "Node 'b.one' is busy"),
             s::expect_error("blockdev-del", "GenericError", "Node 'f.one' is busy"),
             s::reply_held(),  // the late success: discarded by the client
             s::event("DEVICE_DELETED", {{"device", "one"}}),
             // Next change: the device is gone, its nodes are not.
             s::expect("qom-list", qom_children(f.planned.topology)),
             s::expect("query-named-block-nodes", late_nodes), s::expect("blockdev-del"),
             s::expect("blockdev-del"), s::expect("blockdev-add"), s::expect("blockdev-add"),
             s::expect("device_add")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto placed = co_await f.vm->add_disk(f.disk("one"));
        REQUIRE_FALSE(placed.ok());
        CHECK(placed.error().code == Errc::timeout);
        auto left = f.vm->diverged();
        INFO(fmt::format("{}", fmt::join(left, ", ")));
        CHECK(left.size() == 3);
        CHECK(contains(left, "device one"));
        auto two = co_await f.vm->add_disk(f.disk("two"));
        require_ok(two);
        // The port the stray device held is free again: "two" gets the first disk port.
        CHECK(two->address == spec::PciAddress{0, 1, 0, 0});
        CHECK(f.vm->diverged().empty());
    }()));
}

TEST_CASE("while a stray device holds its port and name, hotplug goes around it") {
    Fixture f(300ms);
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"), s::hold("device_add"),
             s::hold("device_del"), s::hold("blockdev-del", 2), s::reply_held(),
             // Next change: the stray device is still plugged and will not go.
             s::expect("qom-list", qom_children(f.planned.topology, {"one"})),
             s::expect("query-named-block-nodes", Json::array()),
             s::expect_error("device_del", "GenericError", "guest is busy"),
             // "one" again: refused before QEMU is asked. "two": the next port.
             s::expect("qom-list", qom_children(f.planned.topology, {"one"})),
             s::expect("query-named-block-nodes", Json::array()),
             s::expect_error("device_del", "GenericError", "guest is busy"),
             s::expect("blockdev-add"), s::expect("blockdev-add"), s::expect("device_add")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto placed = co_await f.vm->add_disk(f.disk("one"));
        REQUIRE_FALSE(placed.ok());
        auto again = co_await f.vm->add_disk(f.disk("one"));
        REQUIRE_FALSE(again.ok());
        CHECK(again.error().code == Errc::conflict);
        auto two = co_await f.vm->add_disk(f.disk("two"));
        require_ok(two);
        CHECK(two->address == spec::PciAddress{0, 2, 0, 0});
        CHECK(contains(f.vm->diverged(), "device one"));
    }()));
}

TEST_CASE("a timeout or a broken connection is not invalid input") {
    Fixture f(300ms);
    f.serve({s::hold("blockdev-add"), s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto placed = co_await f.vm->add_disk(f.disk("one"));
        REQUIRE_FALSE(placed.ok());
        CHECK(placed.error().code == Errc::timeout);
        CHECK(placed.error().qmp_class.empty());
        CHECK(f.vm->diverged().empty());  // the undo found nothing to remove: clean
    }()));
}

TEST_CASE("an unplug whose backend cannot be removed leaves a stray, not a silent leak") {
    Fixture f;
    f.serve({s::expect("netdev_add"), s::expect("device_add"), s::expect("device_del"),
             s::event("DEVICE_DELETED", {{"device", "n1"}}),
             s::expect_error("netdev_del", "GenericError", "cannot")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        require_ok(co_await f.vm->add_interface(f.nic("n1")));
        require_ok(co_await f.vm->remove_interface("n1", 10s));
        CHECK(f.vm->live_spec().interfaces.empty());
        CHECK(f.vm->diverged() == std::vector<std::string>{"netdev net.n1"});
    }()));
    CHECK(f.events.has("diverged"));
}

TEST_CASE(
    "an unplug whose device_del got no answer completes on retry when QEMU no longer has it") {
    Fixture f(300ms);
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"), s::expect("device_add"),
             s::hold("device_del"),  // never answered: it may or may not have reached QEMU
             s::expect_error("device_del", "DeviceNotFound", "Device 'one' not found"),
             s::expect("blockdev-del"), s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        require_ok(co_await f.vm->add_disk(f.disk("one")));
        auto first = co_await f.vm->remove_disk("one", 10s);
        REQUIRE_FALSE(first.ok());
        CHECK(first.error().code == Errc::timeout);
        CHECK(f.vm->removing() == std::vector<std::string>{"disk/one"});
        require_ok(co_await f.vm->remove_disk("one", 10s));  // asks again: gone, so finished
        CHECK(f.vm->removing().empty());
        CHECK(f.vm->live_spec().disks.empty());
        CHECK(f.vm->diverged().empty());
    }()));
}

TEST_CASE("a device the guest ejects by itself leaves the live state, and its backend goes") {
    Fixture f;
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"), s::expect("device_add"),
             s::event("DEVICE_DELETED", {{"device", "one"}, {"path", "/machine/peripheral/one"}}),
             s::expect("blockdev-del"), s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        require_ok(co_await f.vm->add_disk(f.disk("one")));
        bool removed = co_await f.events.wait_for("device-removed", 10s);
        REQUIRE(removed);
        CHECK(f.vm->live_spec().disks.empty());
        // The port is free again: all 8 disk ports.
        const auto& ports = f.vm->topology().hotplug_ports;
        CHECK(std::count_if(ports.begin(), ports.end(),
                            [](const auto& p) { return p.cls == "disks"; }) == 8);
    }()));
}

TEST_CASE("in the libvirt layout, hotplug takes the empty ports and gives them back") {
    // rng (on by default) takes port 1; 8 disk spares are ports 2-9, 4 NIC spares 10-13.
    Fixture f(10s, "name: t\nmachine: {layout: libvirt}\n");
    REQUIRE(f.planned.topology.controllers.size() == 13);
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"), s::expect("device_add"),
             s::expect("netdev_add"), s::expect("device_add"), s::expect("device_del"),
             s::event("DEVICE_DELETED", {{"device", "one"}}), s::expect("blockdev-del"),
             s::expect("blockdev-del"), s::expect("device_del"),
             s::event("DEVICE_DELETED", {{"device", "n1"}}), s::expect("netdev_del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto disk = co_await f.vm->add_disk(f.disk("one"));
        require_ok(disk);
        CHECK(disk->address == spec::PciAddress{0, 2, 0, 0});
        CHECK(disk->parent == "pci.2");
        auto nic = co_await f.vm->add_interface(f.nic("n1"));
        require_ok(nic);
        CHECK(nic->address == spec::PciAddress{0, 10, 0, 0});
        CHECK(f.vm->live_spec().hotplug.disks == 7);
        CHECK(f.vm->live_spec().hotplug.interfaces == 3);
        require_ok(co_await f.vm->remove_disk("one", 10s));
        require_ok(co_await f.vm->remove_interface("n1", 10s));
        CHECK(f.vm->live_spec().hotplug.disks == 8);
        CHECK(f.vm->live_spec().hotplug.interfaces == 4);
        CHECK(f.vm->topology().controllers.size() == 13);
    }()));
}
