// The spec fields of local VMs: firmware, cloudInit, port forwards, ephemeral disks. What each
// accepts, how it is written back, and every bad input reported at its place.
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <qshim/spec.hpp>

#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::spec;
using Catch::Contains;
using qshim::test::must_parse;
using qshim::test::problem;
using qshim::test::problems;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path = fs::temp_directory_path() / fmt::format("qshim-spec-local-{}", getpid());
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    std::string write(const std::string& name, std::string_view text) const {
        std::ofstream(path / name, std::ios::binary) << text;
        return (path / name).string();
    }
};

}  // namespace

TEST_CASE("firmware: bios by default, uefi with or without secure boot") {
    CHECK(must_parse("name: a\n").firmware.type == FirmwareType::bios);
    auto uefi = must_parse("name: a\nfirmware: {type: uefi}\n");
    CHECK(uefi.firmware.type == FirmwareType::uefi);
    CHECK_FALSE(uefi.firmware.secure_boot);
    CHECK(must_parse("name: a\nfirmware: {type: uefi, secureBoot: true}\n").firmware.secure_boot);
    CHECK_THAT(
        problem("name: a\nfirmware: {type: bios, secureBoot: true}\n"),
        Contains("vm.yaml:2:") && Contains("firmware.secureBoot: needs firmware.type: uefi"));
    CHECK_THAT(problem("name: a\nfirmware: {secureBoot: true}\n"),
               Contains("firmware.secureBoot: needs firmware.type: uefi"));
    CHECK_THAT(problem("name: a\nfirmware: {type: efi}\n"), Contains("firmware.type"));
}

TEST_CASE("port forwards on a user network, restricted or not") {
    auto s = must_parse(R"(name: a
interfaces:
  - name: n
    backend:
      type: user
      restrict: true
      portForwards:
        - {hostPort: 2222, guestPort: 22}
        - {hostPort: 5353, guestPort: 53, protocol: udp, hostAddress: 0.0.0.0}
)");
    const auto& b = s.interfaces[0].backend;
    CHECK(b.restricted);
    REQUIRE(b.port_forwards.size() == 2);
    CHECK(b.port_forwards[0].protocol == Protocol::tcp);
    CHECK(b.port_forwards[0].host_address == "127.0.0.1");  // never every address by default
    CHECK(b.port_forwards[0].host_port == 2222);
    CHECK(b.port_forwards[0].guest_port == 22);
    CHECK(b.port_forwards[1].protocol == Protocol::udp);
    CHECK(b.port_forwards[1].host_address == "0.0.0.0");
    // Written back with every default explicit, and read again to the same.
    auto yaml = to_yaml(s);
    REQUIRE(yaml.ok());
    CHECK_THAT(*yaml, Contains("hostAddress: \"127.0.0.1\"") && Contains("restrict: true"));
    auto again = must_parse(*yaml);
    CHECK(again.interfaces[0].backend.port_forwards.size() == 2);
    CHECK(again.interfaces[0].backend.restricted);
}

TEST_CASE("bad port forwards are refused where they are written") {
    auto with = [](std::string_view forwards, std::string_view type = "user") {
        return fmt::format(
            "name: a\ninterfaces:\n  - name: n\n    backend:\n      type: {}\n"
            "      socket: /run/s\n      portForwards: {}\n",
            type, forwards);
    };
    auto user = [](std::string_view forwards) {
        return fmt::format(
            "name: a\ninterfaces:\n  - name: n\n    backend: {{type: user, portForwards: {}}}\n",
            forwards);
    };
    CHECK_THAT(problem(user("[{hostPort: 0, guestPort: 22}]")),
               Contains("vm.yaml:4:") &&
                   Contains("interfaces[0].backend.portForwards[0].hostPort: 0 is out of range"));
    CHECK_THAT(problem(user("[{hostPort: 2222, guestPort: 70000}]")), Contains(".guestPort"));
    CHECK_THAT(problem(user("[{hostPort: 2222}]")), Contains("guestPort"));
    CHECK_THAT(problem(user("[{hostPort: 2222, guestPort: 22, protocol: sctp}]")),
               Contains(".protocol"));
    CHECK_THAT(problem(user("[{hostPort: 2222, guestPort: 22, hostAddress: localhost}]")),
               Contains(".hostAddress: must be an IPv4 address"));
    CHECK_THAT(problem(user("[{hostPort: 2222, guestPort: 22, hostAddress: 1.2.3.256}]")),
               Contains(".hostAddress"));
    CHECK_THAT(problem(user("[{hostPort: 2222, guestPort: 22}, {hostPort: 2222, guestPort: 23}]")),
               Contains("portForwards[1].hostPort: tcp port 2222 is also forwarded by "
                        "interfaces[0].backend.portForwards[0]"));
    // Every address and one address overlap; tcp and udp do not.
    CHECK_THAT(problem(user("[{hostPort: 80, guestPort: 1}, {hostPort: 80, guestPort: 2, "
                            "hostAddress: 0.0.0.0}]")),
               Contains("tcp port 80 is also forwarded"));
    must_parse(user("[{hostPort: 80, guestPort: 1}, {hostPort: 80, guestPort: 1, protocol: udp}]"));
    must_parse(
        user("[{hostPort: 80, guestPort: 1}, {hostPort: 80, guestPort: 1, hostAddress: "
             "127.0.0.2}]"));
    // Across interfaces too.
    CHECK_THAT(
        problem(
            "name: a\ninterfaces:\n"
            "  - {name: n, backend: {type: user, portForwards: [{hostPort: 9, guestPort: 9}]}}\n"
            "  - {name: m, backend: {type: user, portForwards: [{hostPort: 9, guestPort: 9}]}}\n"),
        Contains("interfaces[1].backend.portForwards[0].hostPort: tcp port 9 is also "
                 "forwarded by interfaces[0]"));
    CHECK_THAT(problem(with("[{hostPort: 1, guestPort: 1}]", "stream")),
               Contains("portForwards: applies to types user and passt only"));
    CHECK_THAT(problem("name: a\ninterfaces:\n  - {name: n, backend: {type: stream, socket: /s, "
                       "restrict: true}}\n"),
               Contains("restrict: applies to type user only"));
}

TEST_CASE("ephemeral disks, and where ephemeral makes no sense") {
    auto s = must_parse(
        "name: a\ndisks: [{name: d, path: img.qcow2, format: qcow2, ephemeral: true}]\n");
    CHECK(s.disks[0].ephemeral);
    CHECK_FALSE(s.disks[0].read_only);  // the guest writes, to the overlay
    CHECK_THAT(problem("name: a\ndisks: [{name: d, path: i.iso, format: raw, bus: scsi, device: "
                       "cdrom, ephemeral: true}]\n"),
               Contains("disks[0].ephemeral: a cdrom is read-only already"));
    // Hot-plugged disks cannot be ephemeral: the overlay is made at start.
    auto hot = parse_disk(R"({"name": "d", "path": "/i", "format": "raw", "ephemeral": true})", s);
    REQUIRE_FALSE(hot.ok());
    CHECK_THAT(to_string(hot.error().diagnostics.at(0)), Contains("ephemeral"));
}

TEST_CASE("cloudInit: inline text or files, read when the spec is loaded") {
    TempDir dir;
    dir.write("user-data", "#cloud-config\nhostname: x\n");
    std::string spec_file = (dir.path / "vm.yaml").string();
    auto r = parse_spec(
        "name: a\ncloudInit:\n  userDataFile: user-data\n  metaData: "
        "\"instance-id: one\"\n  networkConfig: |\n    version: 2\n",
        spec_file);
    REQUIRE(r.ok());
    const auto& c = *r->cloud_init;
    CHECK(c.user_data.present);
    CHECK(c.user_data.text == "#cloud-config\nhostname: x\n");
    CHECK(c.user_data.file_as_written == "user-data");
    CHECK(c.meta_data.text == "instance-id: one");
    CHECK(c.network_config.text == "version: 2\n");
    // Written back as written: the file by its name, inline text as text.
    auto yaml = to_yaml(*r);
    REQUIRE(yaml.ok());
    CHECK_THAT(*yaml, Contains("userDataFile: \"user-data\"") && Contains("instance-id: one"));
    // An empty cloudInit is a seed with qshim's meta-data only.
    auto empty = must_parse("name: a\ncloudInit: {}\n");
    REQUIRE(empty.cloud_init);
    CHECK_FALSE(empty.cloud_init->user_data.present);
}

TEST_CASE("bad cloudInit input names the field and the reason") {
    TempDir dir;
    std::string spec_file = (dir.path / "vm.yaml").string();
    auto one = [&](std::string_view text) { return problem(text, spec_file); };
    CHECK_THAT(one("name: a\ncloudInit: {userData: x, userDataFile: f}\n"),
               Contains("cloudInit.userDataFile: give userData or userDataFile, not both"));
    CHECK_THAT(
        one("name: a\ncloudInit: {userDataFile: missing}\n"),
        Contains("cloudInit.userDataFile: " + (dir.path / "missing").string() + ": no such file"));
    dir.write("binary", std::string("\x7f"
                                    "ELF\x02\x01\x01\0\0",
                                    9));
    CHECK_THAT(one("name: a\ncloudInit: {userDataFile: binary}\n"),
               Contains(":2:") && Contains("cloudInit.userDataFile: must be text"));
    dir.write("latin1", "caf\xe9\n");
    CHECK_THAT(one("name: a\ncloudInit: {userDataFile: latin1}\n"), Contains("must be text"));
    CHECK_THAT(one("name: a\ncloudInit: {userData: \"a\\0b\"}\n"),
               Contains("cloudInit.userData: must be text"));
    CHECK_THAT(one("name: a\ncloudInit: {metaData: \"- a list\"}\n"),
               Contains("cloudInit.metaData: must be a YAML map"));
    CHECK_THAT(one("name: a\ncloudInit: {networkConfig: \"a: [\"}\n"),
               Contains("cloudInit.networkConfig: is not YAML cloud-init can read"));
    CHECK_THAT(one("name: a\ncloudInit: {userDataFile: .}\n"), Contains("not a regular file"));
    // A FIFO nobody writes to would block a plain read forever.
    REQUIRE(mkfifo((dir.path / "fifo").c_str(), 0600) == 0);
    CHECK_THAT(one("name: a\ncloudInit: {userDataFile: fifo}\n"), Contains("not a regular file"));
    dir.write("big", std::string(max_seed_bytes + 1, 'x'));
    CHECK_THAT(one("name: a\ncloudInit: {userDataFile: big}\n"),
               Contains("cloudInit: the seed's files hold more than 1048576 bytes"));
    CHECK_THAT(one("name: a\ncloudInit: {vendorData: x}\n"), Contains("cloudInit.vendorData"));
}

TEST_CASE("blank disks: a capacity instead of an image, for one run") {
    auto s = must_parse("name: a\ndisks: [{name: scratch, capacity: 2Gi, bus: scsi}]\n");
    REQUIRE(s.disks.size() == 1);
    CHECK(s.disks[0].blank());
    CHECK(s.disks[0].capacity_bytes == 2ull << 30);
    CHECK(s.disks[0].path.empty());
    CHECK(s.disks[0].format == DiskFormat::qcow2);
    // Written back as it was given.
    auto yaml = to_yaml(s);
    REQUIRE(yaml.ok());
    CHECK_THAT(*yaml, Contains("capacity: \"2Gi\"") && !Contains("path:"));

    CHECK_THAT(problem("name: a\ndisks: [{name: d, capacity: 1Gi, path: /i}]\n"),
               Contains("disks[0].path: a blank disk (capacity) has no image to name"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, capacity: 512Ki}]\n"),
               Contains("disks[0].capacity: must be a whole number of MiB"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, capacity: 100Ti}]\n"),
               Contains("disks[0].capacity: must be from 1Mi to 64Ti"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, capacity: 1Gi, ephemeral: true}]\n"),
               Contains("disks[0].capacity: a blank disk is already thrown away") &&
                   Contains("not ephemeral"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, capacity: 1Gi, readOnly: true}]\n"),
               Contains("not readOnly"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, capacity: 1Gi, bus: sata, device: cdrom}]\n"),
               Contains("a blank cdrom holds nothing"));
    CHECK_THAT(problems("name: a\ndisks: [{name: d}]\n").at(0),
               Contains("disks[0].path: is required"));
    // Hot-plugged disks cannot be blank: the image is made at start.
    auto hot = parse_disk(R"({"name": "d", "capacity": "1Gi"})", s);
    REQUIRE_FALSE(hot.ok());
    CHECK_THAT(to_string(hot.error().diagnostics.at(0)),
               Contains("capacity: a blank disk is made"));
}

TEST_CASE("folder disks: an ISO image of a folder, read-only, made at each start") {
    auto s = must_parse(
        "name: a\ndisks: [{name: cfg, folder: /run/config/app, volumeLabel: cfgdata, bus: "
        "scsi}]\n");
    REQUIRE(s.disks.size() == 1);
    const auto& d = s.disks[0];
    CHECK(d.from_folder());
    CHECK(d.folder == "/run/config/app");
    CHECK(d.volume_label == "cfgdata");
    CHECK(d.read_only);
    CHECK(d.path.empty());
    CHECK_FALSE(d.no_medium());
    CHECK_FALSE(d.blank());
    // Written back as it was given, and read back the same.
    auto yaml = to_yaml(s);
    REQUIRE(yaml.ok());
    CHECK_THAT(*yaml, Contains("folder: \"/run/config/app\"") && Contains("volumeLabel:") &&
                          !Contains("path:") && !Contains("format:"));
    // A cdrom can hold one too: then it is not an empty drive.
    auto cd = must_parse("name: a\ndisks: [{name: cfg, folder: /f, device: cdrom, bus: sata}]\n");
    CHECK(cd.disks[0].from_folder());
    CHECK_FALSE(cd.disks[0].no_medium());

    CHECK_THAT(problem("name: a\ndisks: [{name: d, folder: /f, path: /i}]\n"),
               Contains("disks[0].path: a folder disk's image is the one qshim makes"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, folder: /f, format: raw}]\n"),
               Contains("disks[0].format: a folder disk's image"));
    // A sata disk cannot be read-only in QEMU: its folder image is this run's copy to write.
    auto sata = must_parse("name: a\ndisks: [{name: cfg, folder: /f, bus: sata}]\n");
    CHECK_FALSE(sata.disks[0].read_only);
    CHECK_FALSE(must_parse("name: a\ndisks: [{name: d, folder: /f, readOnly: false}]\n")
                    .disks[0]
                    .read_only);
    CHECK_THAT(problem("name: a\ndisks: [{name: d, folder: /f, bus: sata, readOnly: true}]\n"),
               Contains("disks[0].readOnly: a sata disk cannot be read-only"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, path: /i, format: raw, bus: sata, readOnly: "
                       "true}]\n"),
               Contains("disks[0].readOnly: a sata disk cannot be read-only (QEMU's ide-hd "
                        "refuses it): use device cdrom, or bus virtio or scsi"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, folder: /f, ephemeral: true}]\n"),
               Contains("disks[0].folder: a folder disk is an image qshim makes for this run"));
    CHECK_THAT(problem("name: a\ndisks: [{name: d, folder: /f, storageDaemon: true}]\n"),
               Contains("not ephemeral or served by a storage daemon"));
    for (const char* label : {"", "has space", "x23456789012345678901234567890123", "a/b"})
        CHECK_THAT(problem(fmt::format("name: a\ndisks: [{{name: d, folder: /f, volumeLabel: "
                                       "\"{}\"}}]\n",
                                       label)),
                   Contains("disks[0].volumeLabel: must be 1-32 of A-Z a-z 0-9 . _ -"));
    // Hot-plugged disks name an image: the folder's is made at start.
    auto hot = parse_disk(R"({"name": "d", "folder": "/f"})", s);
    REQUIRE_FALSE(hot.ok());
    CHECK_THAT(to_string(hot.error().diagnostics.at(0)),
               Contains("folder: a folder disk's image is made when the VM starts"));
}

TEST_CASE("cloudInit: the datasource is NoCloud unless it says configDrive") {
    auto s = must_parse("name: a\ncloudInit: {userData: x}\n");
    REQUIRE(s.cloud_init);
    CHECK(s.cloud_init->datasource == Datasource::no_cloud);
    auto d = must_parse("name: a\ncloudInit: {datasource: configDrive, userData: x}\n");
    CHECK(d.cloud_init->datasource == Datasource::config_drive);
    auto yaml = to_yaml(d);
    REQUIRE(yaml.ok());
    CHECK_THAT(*yaml, Contains("datasource: \"configDrive\""));
    CHECK_THAT(problem("name: a\ncloudInit: {datasource: openstack}\n"),
               Contains("cloudInit.datasource: must be one of noCloud, configDrive"));
}

TEST_CASE("firmware: the SMBIOS uuid and serial the guest reads") {
    auto s = must_parse(
        "name: a\nfirmware: {uuid: 5D307CA9-B3EF-428C-8861-06E72D69F223, serial: SN-1}\n");
    CHECK(s.firmware.uuid == "5d307ca9-b3ef-428c-8861-06e72d69f223");  // lower case
    CHECK(s.firmware.serial == "SN-1");
    auto yaml = to_yaml(s);
    REQUIRE(yaml.ok());
    CHECK_THAT(*yaml, Contains("uuid: \"5d307ca9-b3ef-428c-8861-06e72d69f223\""));
    CHECK_THAT(problem("name: a\nfirmware: {uuid: 5d307ca9b3ef428c886106e72d69f223}\n"),
               Contains("firmware.uuid: must be a UUID"));
    CHECK_THAT(problem("name: a\nfirmware: {uuid: 5d307ca9-b3ef-428c-8861-06e72d69f22g}\n"),
               Contains("firmware.uuid: must be a UUID"));
    // A serial reaches QEMU inside an option list: no ',' or '='.
    CHECK_THAT(problem("name: a\nfirmware: {serial: \"a,type=2\"}\n"),
               Contains("firmware.serial: must be 1 to 20 characters"));
}
