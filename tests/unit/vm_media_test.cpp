// SCSI LUN hotplug, cdrom media changes and vhost-user disk hotplug against the fake QEMU: the
// commands in their order, the live spec after each outcome, and every failure path.
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include "vm_harness.hpp"

using namespace qshim;
using namespace qshim::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace s = qshim::test::steps;

namespace {

// A VM with an empty scsi cdrom (LUN 0, device id "cd") and a SCSI controller kept for hotplug.
const char* scsi_vm =
    "name: t\n"
    "hotplug: {scsi: true}\n"
    "disks:\n"
    "  - {name: root, path: root.raw, format: raw}\n"
    "  - {name: cd, bus: scsi, device: cdrom}\n";

struct Fixture {
    asio::io_context io;
    FakeQemu qemu{io};
    EventLog events{io.get_executor()};
    PlannedVm planned;
    std::unique_ptr<Vm> vm;

    explicit Fixture(const char* yaml = scsi_vm) {
        for (const char* name : {"root.raw", "a.iso", "b.iso", "lun.raw"})
            make_image(qemu.dir.path / name);
        planned = plan_vm(yaml, qemu.dir.path.string());
        auto options = qemu.options();
        options.on_event = [this](const nlohmann::json& e) { events(e); };
        vm = std::make_unique<Vm>(io.get_executor(), planned.spec, planned.topology, options);
    }
    void serve(Script script) {
        asio::co_spawn(io, qemu.serve(boot(planned.topology) + script + graceful_stop()),
                       asio::detached);
    }
    std::string path(const char* name) const { return (qemu.dir.path / name).string(); }
    // The cdrom's disc in the live spec; empty when there is none.
    std::string disc() const {
        for (const auto& d : vm->live_spec().disks)
            if (d.name == "cd") return d.path;
        return "missing";
    }
    // The commands the fake QEMU received after the boot's cont.
    std::vector<std::string> commands() {
        std::vector<std::string> out;
        bool booted = false;
        for (const auto& c : qemu.server()->commands()) {
            std::string name = c.value("execute", "");
            if (booted && name != "system_powerdown") out.push_back(name);
            booted = booted || name == "cont";
        }
        return out;
    }
    const Json& sent(const std::string& command) {
        for (const auto& c : qemu.server()->commands())
            if (c.value("execute", "") == command) return c;
        throw std::runtime_error("not sent: " + command);
    }
    bool ends_cleanly(asio::awaitable<void> driver) {
        return test::ends_cleanly(io, *vm, qemu, events, std::move(driver));
    }
};

// query-block's answer for the drive of device "cd".
Json drive(bool tray_open, bool locked, const char* node = nullptr) {
    Json d = {{"device", ""},
              {"qdev", "cd"},
              {"removable", true},
              {"locked", locked},
              {"tray_open", tray_open}};
    if (node) d["inserted"] = {{"node-name", node}};
    return Json::array({d});
}

Json tray_moved(bool open) { return {{"device", ""}, {"id", "cd"}, {"tray-open", open}}; }

}  // namespace

TEST_CASE("a disc goes into an empty drive: node first, then tray, insert, close") {
    Fixture f;
    f.serve({s::expect("query-block", drive(false, false)), s::expect("blockdev-add"),
             s::expect("blockdev-open-tray"), s::event("DEVICE_TRAY_MOVED", tray_moved(true)),
             s::expect("blockdev-insert-medium"), s::expect("blockdev-close-tray")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        const MediumChange change{f.path("a.iso"), spec::DiskFormat::raw};
        require_ok(co_await f.vm->change_medium("cd", change));
        CHECK(f.disc() == f.path("a.iso"));
    }()));
    CHECK(f.commands() == std::vector<std::string>{"query-block", "blockdev-add",
                                                   "blockdev-open-tray", "blockdev-insert-medium",
                                                   "blockdev-close-tray"});
    const Json& add = f.sent("blockdev-add")["arguments"];
    CHECK(add ==
          Json{{"driver", "raw"},
               {"node-name", "m.cd"},
               {"read-only", true},
               {"file", {{"driver", "file"}, {"filename", f.path("a.iso")}, {"read-only", true}}}});
    CHECK(f.sent("blockdev-open-tray")["arguments"] == Json{{"id", "cd"}, {"force", false}});
    CHECK(f.sent("blockdev-insert-medium")["arguments"] ==
          Json{{"id", "cd"}, {"node-name", "m.cd"}});
    REQUIRE(f.events.find("medium-changed"));
    CHECK((*f.events.find("medium-changed"))["path"] == f.path("a.iso"));
}

TEST_CASE("a disc is replaced: the new node takes the other name, the old one goes") {
    Fixture f;
    f.serve({s::expect("query-block", drive(false, false, "m.cd")), s::expect("blockdev-add"),
             s::expect("blockdev-open-tray"), s::event("DEVICE_TRAY_MOVED", tray_moved(true)),
             s::expect("blockdev-remove-medium"), s::expect("blockdev-del"),
             s::expect("blockdev-insert-medium"), s::expect("blockdev-close-tray")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        const MediumChange change{f.path("b.iso"), spec::DiskFormat::raw};
        require_ok(co_await f.vm->change_medium("cd", change));
        CHECK(f.disc() == f.path("b.iso"));
    }()));
    CHECK(f.sent("blockdev-add")["arguments"]["node-name"] == "b.cd");
    CHECK(f.sent("blockdev-del")["arguments"] == Json{{"node-name", "m.cd"}});
}

TEST_CASE("a tray the guest keeps locked: 409 after the wait, the new node removed, no change") {
    Fixture f;
    f.serve({s::expect("query-block", drive(false, true, "m.cd")), s::expect("blockdev-add"),
             s::expect("blockdev-open-tray"), s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        const MediumChange change{f.path("b.iso"), spec::DiskFormat::raw};
        auto r = co_await f.vm->change_medium("cd", change);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::conflict);
        CHECK_THAT(r.error().message,
                   Catch::Contains("keeps the tray locked") && Catch::Contains("force: true"));
        CHECK(f.vm->diverged().empty());
    }()));
    CHECK(f.sent("blockdev-del")["arguments"] == Json{{"node-name", "b.cd"}});
    CHECK_FALSE(f.events.has("medium-changed"));
}

TEST_CASE("force opens a locked tray; an eject leaves the drive empty and closed") {
    Fixture f;
    f.serve({s::expect("query-block", drive(false, true, "b.cd")), s::expect("blockdev-open-tray"),
             s::event("DEVICE_TRAY_MOVED", tray_moved(true)), s::expect("blockdev-remove-medium"),
             s::expect("blockdev-del"), s::expect("blockdev-del"),
             s::expect("blockdev-close-tray")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        MediumChange eject;
        eject.force = true;
        require_ok(co_await f.vm->change_medium("cd", eject));
        CHECK(f.disc().empty());
    }()));
    CHECK(f.sent("blockdev-open-tray")["arguments"] == Json{{"id", "cd"}, {"force", true}});
    // b.cd may be the command line's node: its file node f.cd goes too.
    auto& all = f.qemu.server()->commands();
    std::vector<std::string> deleted;
    for (const auto& c : all)
        if (c.value("execute", "") == "blockdev-del")
            deleted.push_back(c["arguments"]["node-name"]);
    CHECK(deleted == std::vector<std::string>{"b.cd", "f.cd"});
    CHECK((*f.events.find("medium-changed"))["path"].is_null());
}

TEST_CASE("an insert QEMU refuses after the old disc went leaves the drive empty, and says so") {
    Fixture f;
    f.serve({s::expect("query-block", drive(false, false, "m.cd")), s::expect("blockdev-add"),
             s::expect("blockdev-open-tray"), s::event("DEVICE_TRAY_MOVED", tray_moved(true)),
             s::expect("blockdev-remove-medium"), s::expect("blockdev-del"),
             s::expect_error("blockdev-insert-medium", "GenericError", "no medium slot"),
             s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        const MediumChange change{f.path("b.iso"), spec::DiskFormat::raw};
        auto r = co_await f.vm->change_medium("cd", change);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().qmp_class == "GenericError");
        CHECK_THAT(r.error().message, Catch::Contains("the drive is empty now"));
        CHECK(f.disc().empty());
    }()));
    CHECK((*f.events.find("medium-changed"))["path"].is_null());
}

TEST_CASE("media requests QEMU never sees: an image QEMU cannot reach, not a cdrom, no disk") {
    Fixture f;
    f.serve({});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        const MediumChange change{f.path("gone.iso"), spec::DiskFormat::raw};
        auto gone = co_await f.vm->change_medium("cd", change);
        REQUIRE_FALSE(gone.ok());
        CHECK(gone.error().code == Errc::invalid_spec);
        CHECK(gone.error().diagnostics.at(0).path == "path");
        const MediumChange eject;
        auto root = co_await f.vm->change_medium("root", eject);
        REQUIRE_FALSE(root.ok());
        CHECK(root.error().code == Errc::conflict);
        CHECK_THAT(root.error().message, Catch::Contains("disk root is not a cdrom"));
        auto none = co_await f.vm->change_medium("nothing", eject);
        REQUIRE_FALSE(none.ok());
        CHECK(none.error().code == Errc::not_found);
    }()));
    CHECK(f.commands().empty());
}

TEST_CASE("a scsi disk plugs as the lowest free LUN, and unplugs; the controller stays") {
    Fixture f;
    f.serve({s::expect("blockdev-add"), s::expect("blockdev-add"), s::expect("device_add"),
             s::expect("device_del"), s::event("DEVICE_DELETED", {{"device", "lun"}}),
             s::expect("blockdev-del"), s::expect("blockdev-del")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto d = spec::parse_disk(R"({"name": "lun", "path": "lun.raw", "format": "raw",
                                      "bus": "scsi"})",
                                  f.vm->live_spec());
        require_ok(d);
        auto placed = co_await f.vm->add_disk(*d);
        require_ok(placed);
        CHECK(placed->unit == 1u);  // the cdrom holds 0
        CHECK(placed->parent == "scsi.0.0");
        CHECK(f.vm->live_spec().disks.back().lun == 1u);
        require_ok(co_await f.vm->remove_disk("lun", 10s));
        CHECK(f.vm->live_spec().disks.size() == 2);
        CHECK(f.vm->live_spec().hotplug.scsi);
    }()));
    CHECK(f.sent("device_add")["arguments"] == Json{{"driver", "scsi-hd"},
                                                    {"id", "lun"},
                                                    {"drive", "b.lun"},
                                                    {"bus", "scsi.0.0"},
                                                    {"channel", 0},
                                                    {"scsi-id", 0},
                                                    {"lun", 1},
                                                    {"serial", "lun"}});
}

TEST_CASE("scsi hotplug: a LUN taken, no controller, or a sata disk is refused before QEMU") {
    Fixture f("name: t\ndisks: [{name: root, path: root.raw, format: raw}]\n");
    f.serve({});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto scsi = spec::parse_disk(
            R"({"name": "lun", "path": "lun.raw", "format": "raw", "bus": "scsi"})",
            f.vm->live_spec());
        require_ok(scsi);
        auto r = co_await f.vm->add_disk(*scsi);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::conflict);
        CHECK_THAT(r.error().message, Catch::Contains("hotplug.scsi: true"));
        auto sata =
            spec::parse_disk(R"({"name": "s", "path": "lun.raw", "format": "raw", "bus": "sata"})",
                             f.vm->live_spec());
        require_ok(sata);
        r = co_await f.vm->add_disk(*sata);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::invalid_spec);
        CHECK(r.error().diagnostics.at(0).path == "bus");
    }()));
    CHECK(f.commands().empty());

    Fixture g;
    g.serve({});
    REQUIRE(g.ends_cleanly([&]() -> asio::awaitable<void> {
        auto taken = spec::parse_disk(
            R"({"name": "lun", "path": "lun.raw", "format": "raw", "bus": "scsi", "lun": 0})",
            g.vm->live_spec());
        require_ok(taken);
        auto r = co_await g.vm->add_disk(*taken);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::conflict);
        CHECK_THAT(r.error().message, Catch::Contains("LUN 0 is taken by disk cd"));
    }()));
    CHECK(g.commands().empty());
}

namespace {

// A unix socket file nobody serves: enough for the checks before QEMU (the fake connects nowhere).
std::string bound_socket(const std::filesystem::path& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    close(fd);
    return path.string();
}

// A hotplug body for disk "ext" served by the vhost-user-blk server at `socket`.
std::string vhost_user_body(const std::string& socket) {
    return fmt::format(R"({{"name": "ext", "backend": {{"type": "vhostUser", "socket": "{}"}}}})",
                       socket);
}

}  // namespace

TEST_CASE("a vhost-user disk plugs as chardev then device, and unplugs device then chardev") {
    Fixture f("name: t\nmemory: {size: 256Mi, shared: true}\n");
    const std::string server = bound_socket(f.qemu.dir.path / "ext.sock");
    f.serve({s::expect("chardev-add"), s::expect("device_add"), s::expect("device_del"),
             s::event("DEVICE_DELETED", {{"device", "ext"}}), s::expect("chardev-remove")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto d = spec::parse_disk(vhost_user_body(server), f.vm->live_spec());
        require_ok(d);
        auto placed = co_await f.vm->add_disk(*d);
        require_ok(placed);
        CHECK(placed->driver == "vhost-user-blk-pci");
        require_ok(co_await f.vm->remove_disk("ext", 10s));
        CHECK(f.vm->live_spec().disks.empty());
        CHECK(f.vm->diverged().empty());
    }()));
    CHECK(
        f.sent("chardev-add")["arguments"] ==
        Json{
            {"id", "vu.ext"},
            {"backend",
             {{"type", "socket"},
              {"data",
               {{"addr", {{"type", "unix"}, {"data", {{"path", server}}}}}, {"server", false}}}}}});
    CHECK(f.sent("device_add")["arguments"] == Json{{"driver", "vhost-user-blk-pci"},
                                                    {"id", "ext"},
                                                    {"chardev", "vu.ext"},
                                                    {"bus", "rp.disks.0"},
                                                    {"addr", "0x0"}});
    CHECK(f.sent("chardev-remove")["arguments"] == Json{{"id", "vu.ext"}});
}

TEST_CASE("vhost-user hotplug: RAM not shared, a missing socket, a refused device") {
    Fixture plain("name: t\n");
    const std::string server = bound_socket(plain.qemu.dir.path / "ext.sock");
    const std::string body = vhost_user_body(server);
    plain.serve({});
    REQUIRE(plain.ends_cleanly([&]() -> asio::awaitable<void> {
        auto d = spec::parse_disk(body, plain.vm->live_spec());
        require_ok(d);
        auto r = co_await plain.vm->add_disk(*d);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().code == Errc::conflict);
        CHECK_THAT(r.error().message, Catch::Contains("memory.shared: true"));
    }()));
    CHECK(plain.commands().empty());

    Fixture f("name: t\nmemory: {size: 256Mi, shared: true}\n");
    const std::string served = vhost_user_body(bound_socket(f.qemu.dir.path / "ext.sock"));
    f.serve({s::expect("chardev-add"),
             s::expect_error("device_add", "GenericError", "vhost-user-blk: cannot get config"),
             s::expect("chardev-remove")});
    REQUIRE(f.ends_cleanly([&]() -> asio::awaitable<void> {
        auto gone = spec::parse_disk(vhost_user_body((f.qemu.dir.path / "none.sock").string()),
                                     f.vm->live_spec());
        require_ok(gone);
        auto r = co_await f.vm->add_disk(*gone);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().diagnostics.at(0).path == "backend.socket");
        auto d = spec::parse_disk(served, f.vm->live_spec());
        require_ok(d);
        r = co_await f.vm->add_disk(*d);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().qmp_class == "GenericError");
        CHECK(f.vm->live_spec().disks.empty());
        CHECK(f.vm->diverged().empty());
    }()));
}
