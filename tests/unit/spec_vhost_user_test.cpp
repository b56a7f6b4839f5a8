// Disks served over vhost-user-blk: an external server's socket (backend vhostUser), or a
// qemu-storage-daemon qshim runs (storageDaemon). What they carry, and what they refuse.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::spec;
using Catch::Contains;
using test::problem;
using test::problems;

namespace {

std::string with_disk(std::string_view disk) {
    return fmt::format("name: vm\ndisks:\n  - name: fast\n{}", disk);
}

}  // namespace

TEST_CASE("a vhostUser disk names its server's socket and nothing of the image",
          "[spec][vhost-user]") {
    auto s = test::must_parse(with_disk("    backend: {type: vhostUser, socket: run/fast.sock}\n"));
    REQUIRE(s.disks.size() == 1);
    const Disk& d = s.disks[0];
    CHECK(d.vhost_user());
    CHECK_FALSE(d.storage_daemon);
    CHECK(d.vhost_user_socket == "/specs/run/fast.sock");  // relative to the spec's folder
    CHECK(d.vhost_user_socket_as_written == "run/fast.sock");
    CHECK(d.path.empty());
    CHECK(d.serial.empty());  // the server answers it
    CHECK(d.bus == DiskBus::virtio);
}

TEST_CASE("a storageDaemon disk is an image qshim exports through qemu-storage-daemon",
          "[spec][vhost-user]") {
    auto s = test::must_parse(
        with_disk("    path: fast.qcow2\n    format: qcow2\n    storageDaemon: true\n"
                  "    readOnly: true\n    bootOrder: 1\n"));
    const Disk& d = s.disks[0];
    CHECK(d.vhost_user());
    CHECK(d.storage_daemon);
    CHECK(d.path == "/specs/fast.qcow2");
    CHECK(d.format == DiskFormat::qcow2);
    CHECK(d.read_only);
    CHECK(d.serial.empty());
    CHECK(d.boot_order == 1u);
}

TEST_CASE("a name longer than a serial is fine on a vhost-user disk", "[spec][vhost-user]") {
    auto s = test::must_parse(
        "name: vm\ndisks:\n  - name: a-very-long-disk-name-indeed\n    path: d.raw\n"
        "    format: raw\n    storageDaemon: true\n");
    CHECK(s.disks[0].serial.empty());
}

TEST_CASE("vhost-user disks survive the round trip through to_yaml", "[spec][vhost-user]") {
    auto s = test::must_parse(
        "name: vm\ndisks:\n  - name: ext\n    backend: {type: vhostUser, socket: /run/ext.sock}\n"
        "  - name: qsd\n    path: /images/q.raw\n    format: raw\n    storageDaemon: true\n");
    auto yaml = to_yaml(s);
    REQUIRE(yaml);
    CHECK_THAT(*yaml, Contains("socket: \"/run/ext.sock\""));
    CHECK_THAT(*yaml, Contains("storageDaemon: true"));
    CHECK_THAT(*yaml, !Contains("serial"));
    auto again = test::must_parse(*yaml);
    REQUIRE(again.disks.size() == 2);
    CHECK(again.disks[0].vhost_user_socket == "/run/ext.sock");
    CHECK(again.disks[1].storage_daemon);
    CHECK(again.disks[1].path == "/images/q.raw");
}

TEST_CASE("what a vhost-user disk cannot have is refused by path", "[spec][vhost-user]") {
    const std::string ext = "    backend: {type: vhostUser, socket: /run/f.sock}\n";
    const std::string qsd = "    path: f.raw\n    format: raw\n    storageDaemon: true\n";
    CHECK_THAT(problem(with_disk(ext + "    serial: ABC\n")),
               Contains("disks[0].serial: a vhostUser disk's serial is answered by its "
                        "vhost-user-blk server"));
    CHECK_THAT(problem(with_disk(qsd + "    bus: scsi\n")),
               Contains("disks[0].bus: a storageDaemon disk is a vhost-user-blk device, a "
                        "virtio disk"));
    CHECK_THAT(
        problem("name: vm\niothreads: 1\ndisks:\n  - name: fast\n" + qsd + "    iothread: 0\n"),
        Contains("disks[0].iothread: a storageDaemon disk does its I/O in its server"));
    CHECK_THAT(problem(with_disk(qsd + "    ephemeral: true\n")),
               Contains("disks[0].ephemeral: a storageDaemon disk cannot be ephemeral"));
    CHECK_THAT(problem(with_disk(ext + "    readOnly: true\n")),
               Contains("disks[0].readOnly: a vhostUser disk is read-only if its server says so"));
    CHECK_THAT(problem(with_disk(ext + "    storageDaemon: true\n")),
               Contains("disks[0].storageDaemon: the storage daemon is the vhost-user server "
                        "qshim runs for path; backend names another one"));
    CHECK_THAT(problem(with_disk("    backend: {type: tap, socket: /run/f.sock}\n")),
               Contains("vm.yaml:4:21: disks[0].backend.type: must be vhostUser"));
    CHECK_THAT(problem(with_disk("    backend: {type: vhostUser}\n")),
               Contains("vm.yaml:4:14: disks[0].backend.socket: is required"));
    CHECK_THAT(problem(with_disk("    backend: {type: vhostUser, socket: /s, queues: 2}\n")),
               Contains("disks[0].backend.queues: unknown field"));
    auto both = problems(with_disk(ext + "    path: f.raw\n    format: raw\n"));
    CHECK(both.size() == 2);
    CHECK_THAT(both[0], Contains("disks[0].path: a vhostUser disk's image belongs to its server"));
    CHECK_THAT(problem(with_disk("    capacity: 1Gi\n    storageDaemon: true\n")),
               Contains("disks[0].capacity: a storageDaemon disk exports an image"));
}

TEST_CASE("a vhost-user disk as a hotplug body is read by the same rules", "[spec][vhost-user]") {
    auto vm = test::must_parse("name: vm\n");
    auto served = parse_disk(
        R"({"name": "hot", "path": "/i.raw", "format": "raw", "storageDaemon": true})", vm);
    REQUIRE(served);
    CHECK(served->storage_daemon);
    auto ext =
        parse_disk(R"({"name": "ext", "backend": {"type": "vhostUser", "socket": "s"}})", vm);
    REQUIRE(ext);
    CHECK(ext->vhost_user_socket == vm.base_dir + "/s");
    auto both = parse_disk(
        R"({"name": "x", "path": "/i.raw", "format": "raw", "backend": {"type": "vhostUser",
            "socket": "/s"}})",
        vm);
    REQUIRE_FALSE(both);
    CHECK_THAT(to_string(both.error().diagnostics.at(0)),
               Contains("path: a vhostUser disk's image belongs to its server"));
}
