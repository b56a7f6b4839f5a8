// The spec loader on valid input: every field, defaults, paths, sizes, formats and round trips.
#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <qshim/spec.hpp>
#include <string>

#include "spec/values.hpp"
#include "spec_test_util.hpp"

using namespace qshim;
using namespace qshim::spec;
namespace fs = std::filesystem;

namespace {

LoadOptions format_option(Format format) {
    LoadOptions o;
    o.format = format;
    return o;
}

// Every field of schema v1, each set away from its default where it has one.
constexpr const char* full_yaml = R"(# Every field of schema v1.
name: full
machine:
  type: pc-q35-7.2
  accel: kvm
  topologyVersion: 1
cpu:
  sockets: 2
  cores: 4
  threads: 2
  model: host
memory:
  size: 8Gi
boot:
  kernel: vmlinuz
  initrd: /boot/initrd.img
  cmdline: console=ttyS0 root=/dev/vda1
disks:
  - name: root
    path: root.qcow2
    format: qcow2
    bus: virtio
    device: disk
    readOnly: false
    serial: ROOT-1
    bootOrder: 1
    pciAddress: "0000:00:05.0"
  - name: install
    path: ../iso/install.iso
    format: raw
    bus: sata
    device: cdrom
    readOnly: true
  - {name: data, path: /srv/data.raw, format: raw, bus: scsi}
interfaces:
  - name: lan
    model: virtio
    mac: "52:54:00:12:34:56"
    backend: {type: tap, name: tap-full0}
    bootOrder: 2
    pciAddress: "0000:00:06.0"
  - {name: wan, model: e1000e, backend: {type: stream, socket: passt.sock}}
  - {name: mgmt, model: e1000, backend: {type: tap, fd: 5}}
  - {name: nat, backend: {type: user}}
hostDevices:
  - {name: gpu, hostAddress: "0000:65:00.0", pciAddress: "0000:00:10.0"}
hotplug: {disks: 2, interfaces: 1}
devices: {balloon: true, rng: false, guestAgent: qga.sock}
serial: {log: logs/serial.log, socket: /run/full/serial.sock}
lifecycle: {gracePeriodSeconds: 90}
)";

// The same spec as JSON.
constexpr const char* full_json = R"({
  "name": "full",
  "machine": {"type": "pc-q35-7.2", "accel": "kvm", "topologyVersion": 1},
  "cpu": {"sockets": 2, "cores": 4, "threads": 2, "model": "host"},
  "memory": {"size": "8Gi"},
  "boot": {"kernel": "vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "console=ttyS0 root=/dev/vda1"},
  "disks": [
    {"name": "root", "path": "root.qcow2", "format": "qcow2", "bus": "virtio", "device": "disk",
     "readOnly": false, "serial": "ROOT-1", "bootOrder": 1, "pciAddress": "0000:00:05.0"},
    {"name": "install", "path": "../iso/install.iso", "format": "raw", "bus": "sata", "device": "cdrom",
     "readOnly": true},
    {"name": "data", "path": "/srv/data.raw", "format": "raw", "bus": "scsi"}
  ],
  "interfaces": [
    {"name": "lan", "model": "virtio", "mac": "52:54:00:12:34:56",
     "backend": {"type": "tap", "name": "tap-full0"}, "bootOrder": 2, "pciAddress": "0000:00:06.0"},
    {"name": "wan", "model": "e1000e", "backend": {"type": "stream", "socket": "passt.sock"}},
    {"name": "mgmt", "model": "e1000", "backend": {"type": "tap", "fd": 5}},
    {"name": "nat", "backend": {"type": "user"}}
  ],
  "hostDevices": [{"name": "gpu", "hostAddress": "0000:65:00.0", "pciAddress": "0000:00:10.0"}],
  "hotplug": {"disks": 2, "interfaces": 1},
  "devices": {"balloon": true, "rng": false, "guestAgent": "qga.sock"},
  "serial": {"log": "logs/serial.log", "socket": "/run/full/serial.sock"},
  "lifecycle": {"gracePeriodSeconds": 90}
})";

std::string opt(const std::optional<unsigned>& v) { return v ? std::to_string(*v) : "-"; }
std::string opt(const std::optional<PciAddress>& a) { return a ? to_string(*a) : "-"; }

// Every field of a VmSpec, one per line: comparing two dumps compares the specs, and a failure
// shows exactly which field differs.
std::string dump(const VmSpec& s) {
    std::string out = fmt::format(
        "name={} file={} base={}\nmachine={} {} v{}\ncpu={}x{}x{} {}\nmemory={} ({})\n"
        "boot={}|{}|{}|{}|{}\nhotplug={}/{}\ndevices={} {} {}|{}\nserial={}|{}|{}|{}\ngrace={}\n",
        s.name, s.source_file, s.base_dir, s.machine.type, to_string(s.machine.accel),
        s.machine.topology_version, s.cpu.sockets, s.cpu.cores, s.cpu.threads, s.cpu.model,
        s.memory.size_bytes, s.memory.size_text, s.boot.kernel, s.boot.kernel_as_written,
        s.boot.initrd, s.boot.initrd_as_written, s.boot.cmdline, s.hotplug.disks,
        s.hotplug.interfaces, s.devices.balloon, s.devices.rng, s.devices.guest_agent,
        s.devices.guest_agent_as_written, s.serial.log, s.serial.log_as_written, s.serial.socket,
        s.serial.socket_as_written, s.lifecycle.grace_period_seconds);
    for (const Disk& d : s.disks)
        out += fmt::format("disk {} {}|{} {} {} {} ro={} serial={} boot={} pci={}\n", d.name,
                           d.path, d.path_as_written, to_string(d.format), to_string(d.bus),
                           to_string(d.device), d.read_only, d.serial, opt(d.boot_order),
                           opt(d.pci_address));
    for (const Interface& i : s.interfaces)
        out += fmt::format(
            "nic {} {} {} explicit={} {} name={} fd={} socket={}|{} boot={} pci={}\n", i.name,
            to_string(i.model), to_string(i.mac), i.mac_explicit, to_string(i.backend.type),
            i.backend.tap_name, i.backend.tap_fd ? *i.backend.tap_fd : -1, i.backend.socket,
            i.backend.socket_as_written, opt(i.boot_order), opt(i.pci_address));
    for (const HostDevice& h : s.host_devices)
        out += fmt::format("hostdev {} {} pci={}\n", h.name, to_string(h.host_address),
                           opt(h.pci_address));
    return out;
}

VmSpec loaded(std::string_view text, const std::string& file = "/srv/vms/vm.yaml",
              const LoadOptions& options = {}) {
    auto r = parse_spec(text, file, options);
    if (!r) {
        std::string all = r.error().what();
        for (const Diagnostic& d : r.error().diagnostics) all += "\n" + to_string(d);
        FAIL(all);
    }
    return std::move(r).value();
}

// A private folder for files, removed when the test ends.
struct TempDir {
    fs::path path = fs::temp_directory_path() / fmt::format("qshim-spec-loader-{}", getpid());
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    fs::path write(const std::string& name, std::string_view text) const {
        std::ofstream(path / name, std::ios::binary) << text;
        return path / name;
    }
};

}  // namespace

TEST_CASE("the full example reads every field", "[spec][loader]") {
    VmSpec s = loaded(full_yaml, "/srv/vms/full.yaml");
    CHECK(s.name == "full");
    CHECK(s.source_file == "/srv/vms/full.yaml");
    CHECK(s.base_dir == "/srv/vms");
    CHECK(s.machine.type == "pc-q35-7.2");
    CHECK(s.machine.accel == Accel::kvm);
    CHECK(s.machine.topology_version == 1);
    CHECK(s.cpu.sockets == 2);
    CHECK(s.cpu.cores == 4);
    CHECK(s.cpu.threads == 2);
    CHECK(s.cpu.count() == 16);
    CHECK(s.cpu.model == "host");
    CHECK(s.memory.size_bytes == 8ull << 30);
    CHECK(s.memory.size_text == "8Gi");
    CHECK(s.boot.kernel == "/srv/vms/vmlinuz");
    CHECK(s.boot.kernel_as_written == "vmlinuz");
    CHECK(s.boot.initrd == "/boot/initrd.img");
    CHECK(s.boot.cmdline == "console=ttyS0 root=/dev/vda1");

    REQUIRE(s.disks.size() == 3);
    const Disk& root = s.disks[0];
    CHECK(root.name == "root");
    CHECK(root.path == "/srv/vms/root.qcow2");
    CHECK(root.format == DiskFormat::qcow2);
    CHECK(root.bus == DiskBus::virtio);
    CHECK(root.device == DiskDevice::disk);
    CHECK_FALSE(root.read_only);
    CHECK(root.serial == "ROOT-1");
    CHECK(root.boot_order == 1u);
    CHECK(root.pci_address == PciAddress{0, 0, 5, 0});
    CHECK(s.disks[1].path == "/srv/iso/install.iso");
    CHECK(s.disks[1].path_as_written == "../iso/install.iso");
    CHECK(s.disks[1].device == DiskDevice::cdrom);
    CHECK(s.disks[1].bus == DiskBus::sata);
    CHECK(s.disks[1].read_only);
    CHECK(s.disks[2].bus == DiskBus::scsi);

    REQUIRE(s.interfaces.size() == 4);
    const Interface& lan = s.interfaces[0];
    CHECK(to_string(lan.mac) == "52:54:00:12:34:56");
    CHECK(lan.mac_explicit);
    CHECK(lan.backend.type == BackendType::tap);
    CHECK(lan.backend.tap_name == "tap-full0");
    CHECK(lan.boot_order == 2u);
    CHECK(lan.pci_address == PciAddress{0, 0, 6, 0});
    CHECK(s.interfaces[1].model == NicModel::e1000e);
    CHECK(s.interfaces[1].backend.type == BackendType::stream);
    CHECK(s.interfaces[1].backend.socket == "/srv/vms/passt.sock");
    CHECK(s.interfaces[2].model == NicModel::e1000);
    CHECK(s.interfaces[2].backend.tap_fd == 5);
    CHECK(s.interfaces[3].backend.type == BackendType::user);

    REQUIRE(s.host_devices.size() == 1);
    CHECK(s.host_devices[0].host_address == PciAddress{0, 0x65, 0, 0});
    CHECK(s.host_devices[0].pci_address == PciAddress{0, 0, 0x10, 0});
    CHECK(s.hotplug.disks == 2);
    CHECK(s.hotplug.interfaces == 1);
    CHECK(s.devices.balloon);
    CHECK_FALSE(s.devices.rng);
    CHECK(s.devices.guest_agent == "/srv/vms/qga.sock");
    CHECK(s.serial.log == "/srv/vms/logs/serial.log");
    CHECK(s.serial.socket == "/run/full/serial.sock");
    CHECK(s.lifecycle.grace_period_seconds == 90);
}

TEST_CASE("the same spec in JSON loads to an equal VmSpec", "[spec][loader]") {
    CHECK(dump(loaded(full_json, "/srv/vms/full.json")) ==
          dump(loaded(full_yaml, "/srv/vms/full.json", format_option(Format::yaml))));
}

TEST_CASE("defaults fill every field left out", "[spec][loader]") {
    VmSpec s = loaded(
        "name: vm\ndisks: [{name: root, path: r.img, format: raw}]\n"
        "interfaces: [{name: net0, backend: {type: user}}]\n");
    CHECK(s.machine.type == "q35");
    CHECK(s.machine.accel == Accel::automatic);
    CHECK(s.machine.topology_version == 1);
    CHECK(s.cpu.count() == 1);
    CHECK(s.cpu.model == "qemu64");
    CHECK(s.memory.size_bytes == 512ull << 20);
    CHECK(s.boot.kernel.empty());
    CHECK(s.hotplug.disks == 8);
    CHECK(s.hotplug.interfaces == 4);
    CHECK(s.devices.rng);
    CHECK_FALSE(s.devices.balloon);
    CHECK(s.devices.guest_agent.empty());
    CHECK(s.serial.log.empty());
    CHECK(s.lifecycle.grace_period_seconds == 30);

    const Disk& d = s.disks.at(0);
    CHECK(d.serial == "root");
    CHECK(d.bus == DiskBus::virtio);
    CHECK(d.device == DiskDevice::disk);
    CHECK_FALSE(d.read_only);
    CHECK_FALSE(d.boot_order);
    CHECK_FALSE(d.pci_address);

    const Interface& n = s.interfaces.at(0);
    CHECK(n.model == NicModel::virtio);
    CHECK_FALSE(n.mac_explicit);
    CHECK(to_string(n.mac) == "52:54:00:4f:20:74");  // FNV-1a of "vm/net0"
    CHECK(n.mac == default_mac("vm", "net0"));
}

TEST_CASE("a cdrom is read-only without saying so", "[spec][loader]") {
    VmSpec s = loaded(
        "name: vm\ndisks: [{name: cd, path: a.iso, format: raw, bus: scsi, device: cdrom}]\n");
    CHECK(s.disks.at(0).read_only);
}

TEST_CASE("a cdrom drive may be empty, scsi disks take a LUN, hotplug.scsi keeps a controller",
          "[spec][loader]") {
    VmSpec s = loaded(
        "name: vm\nhotplug: {scsi: true}\ndisks:\n"
        "  - {name: cd, bus: scsi, device: cdrom, lun: 4}\n"
        "  - {name: sd, path: a.img, format: raw, bus: scsi}\n");
    CHECK(s.hotplug.scsi);
    CHECK(s.disks.at(0).no_medium());
    CHECK(s.disks.at(0).read_only);
    CHECK(s.disks.at(0).lun == 4u);
    CHECK_FALSE(s.disks.at(1).lun);
    CHECK_FALSE(s.disks.at(1).no_medium());
    // Written back: no path for the empty drive, the LUN where one was given.
    auto yaml = to_yaml(s).value();
    CHECK(dump(loaded(yaml)) == dump(s));
    CHECK(yaml.find("lun: 4") != std::string::npos);
    CHECK(yaml.find("scsi: true") != std::string::npos);
    CHECK_FALSE(loaded("name: vm\n").hotplug.scsi);

    using qshim::test::problem;
    CHECK_THAT(problem("name: vm\ndisks: [{name: d, path: a.img, format: raw, lun: 1}]\n"),
               Catch::Contains("disks[0].lun: only scsi disks have a LUN; a virtio disk has a "
                               "PCI function (pciAddress)"));
    CHECK_THAT(problem("name: vm\ndisks: [{name: d, path: a.img, format: raw, bus: scsi, lun: "
                       "256}]\n"),
               Catch::Contains("disks[0].lun"));
    CHECK_THAT(problem("name: vm\ndisks:\n  - {name: a, path: a.img, format: raw, bus: scsi, "
                       "lun: 2}\n  - {name: b, path: b.img, format: raw, bus: scsi, lun: 2}\n"),
               Catch::Contains("vm.yaml:4:") && Catch::Contains("disks[1].lun: LUN 2 is also used "
                                                                "by disks[0].lun"));
    // Only a cdrom may leave its image out.
    CHECK_THAT(qshim::test::problems("name: vm\ndisks: [{name: d, bus: scsi}]\n").at(0),
               Catch::Contains("disks[0].path: is required"));
    CHECK_THAT(problem("name: vm\nhotplug: {scsi: 1}\n"), Catch::Contains("hotplug.scsi"));
}

TEST_CASE("default_mac is pinned: FNV-1a of vm/interface under 52:54:00", "[spec][mac]") {
    // Literal values: if these change, every existing guest sees a new NIC.
    CHECK(to_string(default_mac("web", "eth0")) == "52:54:00:84:ae:fb");
    CHECK(to_string(default_mac("web", "eth1")) == "52:54:00:84:ad:68");
    CHECK(to_string(default_mac("full", "wan")) == "52:54:00:25:b5:7d");
    CHECK(to_string(default_mac("", "")) == "52:54:00:0c:97:5e");
    // The separator is part of the input: "a/bc" and "ab/c" differ.
    CHECK(default_mac("a", "bc") != default_mac("ab", "c"));
}

TEST_CASE("relative paths resolve against the spec's folder", "[spec][loader][paths]") {
    const char* text =
        "name: vm\nboot: {kernel: k/vmlinuz, initrd: ./i.img}\n"
        "disks: [{name: a, path: ../a.img, format: raw}, {name: b, path: /abs/b.img, format: "
        "raw}]\n"
        "devices: {guestAgent: run/qga.sock}\nserial: {log: ../../log.txt}\n";
    VmSpec s = loaded(text, "/srv/vms/web/vm.yaml");
    CHECK(s.base_dir == "/srv/vms/web");
    CHECK(s.boot.kernel == "/srv/vms/web/k/vmlinuz");
    CHECK(s.boot.initrd == "/srv/vms/web/i.img");
    CHECK(s.boot.initrd_as_written == "./i.img");
    CHECK(s.disks.at(0).path == "/srv/vms/a.img");
    CHECK(s.disks.at(1).path == "/abs/b.img");
    CHECK(s.devices.guest_agent == "/srv/vms/web/run/qga.sock");
    CHECK(s.serial.log == "/srv/log.txt");

    SECTION("a relative file name resolves against the working directory") {
        VmSpec r = loaded(text, "specs/vm.yaml");
        CHECK(r.base_dir == (fs::current_path() / "specs").string());
        CHECK(r.disks.at(0).path == (fs::current_path() / "a.img").string());
    }
    SECTION("text without a file name resolves against the working directory") {
        CHECK(loaded(text, "").base_dir == fs::current_path().string());
    }
    SECTION("load_spec resolves against the file's real folder") {
        TempDir dir;
        auto file = dir.write("vm.yaml", text);
        auto r = load_spec(file.string());
        REQUIRE(r.ok());
        CHECK(r->source_file == file.string());
        CHECK(r->boot.kernel == (dir.path / "k/vmlinuz").string());
    }
}

TEST_CASE("memory sizes take binary suffixes or plain bytes", "[spec][loader][memory]") {
    auto size = [](const char* text) {
        return loaded(fmt::format("name: vm\nmemory: {{size: {}}}\n", text)).memory.size_bytes;
    };
    CHECK(size("16384Ki") == 16ull << 20);
    CHECK(size("512Mi") == 512ull << 20);
    CHECK(size("3Gi") == 3ull << 30);
    CHECK(size("1Ti") == 1ull << 40);
    CHECK(size("4Ti") == 4ull << 40);    // the largest allowed
    CHECK(size("16Mi") == 16ull << 20);  // the smallest allowed
    CHECK(size("1073741824") == 1ull << 30);
    CHECK(size("\"2Gi\"") == 2ull << 30);
    CHECK(loaded("name: vm\nmemory: {size: 1024Mi}\n").memory.size_text == "1024Mi");

    CHECK(detail::parse_quantity("0") == 0u);
    CHECK(detail::parse_quantity("18446744073709551615") == UINT64_MAX);
    CHECK_FALSE(detail::parse_quantity("16777216Ti"));  // 2^64: overflows
    CHECK_FALSE(detail::parse_quantity("1G"));
    CHECK_FALSE(detail::parse_quantity("1.5Gi"));
    CHECK_FALSE(detail::parse_quantity("Gi"));
    CHECK_FALSE(detail::parse_quantity("-1Gi"));
}

TEST_CASE("the format comes from the extension, then the content", "[spec][loader][format]") {
    // YAML accepts a trailing comma in a flow map; strict JSON does not.
    const char* lax = "{\"name\": \"vm\",}";
    CHECK(parse_spec(lax, "vm.yaml").ok());
    CHECK(parse_spec(lax, "vm.yml").ok());
    CHECK_FALSE(parse_spec(lax, "vm.json").ok());
    CHECK_FALSE(parse_spec(lax, "vm.spec").ok());  // no known extension, starts with '{': JSON
    CHECK_FALSE(parse_spec(std::string("\n  ") + lax, "vm").ok());
    CHECK(parse_spec("name: vm\n", "vm.spec").ok());  // no known extension, not '{': YAML
    CHECK(parse_spec("name: vm\n", "vm").ok());

    SECTION("an explicit format beats the extension") {
        CHECK_FALSE(parse_spec(lax, "vm.yaml", format_option(Format::json)).ok());
        CHECK(parse_spec(lax, "vm.json", format_option(Format::yaml)).ok());
        auto r = parse_spec("name: vm\n", "vm.yaml", format_option(Format::json));
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().diagnostics.at(0).reason, Catch::StartsWith("malformed JSON"));
    }
    SECTION("load_spec detects the same way") {
        TempDir dir;
        CHECK(load_spec(dir.write("a.yaml", lax).string()).ok());
        CHECK_FALSE(load_spec(dir.write("a.json", lax).string()).ok());
        CHECK(load_spec(dir.write("a.json", lax).string(), format_option(Format::yaml)).ok());
    }
}

TEST_CASE("JSON indented with tabs loads, with columns counting a tab as one",
          "[spec][loader][format]") {
    CHECK(loaded("{\n\t\"name\": \"vm\",\n\t\"cpu\": {\n\t\t\"cores\": 2\n\t}\n}\n", "vm.json")
              .cpu.cores == 2);
    auto r = parse_spec("{\n\t\"name\": \"vm\",\n\t\"cpu\": {\n\t\t\"cores\": \"2\"\n\t}\n}\n",
                        "vm.json");
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.error().diagnostics.size() == 1);
    CHECK(to_string(r.error().diagnostics[0]) ==
          "vm.json:4:12: cpu.cores: must be a whole number from 1 to 255");
}

TEST_CASE("to_yaml round trips", "[spec][loader][yaml]") {
    SECTION("the full example") {
        VmSpec s = loaded(full_yaml, "/srv/vms/full.yaml");
        std::string yaml = to_yaml(s).value();
        VmSpec back = loaded(yaml, "/srv/vms/full.yaml");
        for (Interface& i : s.interfaces) i.mac_explicit = true;  // to_yaml writes every MAC out
        CHECK(dump(back) == dump(s));
        CHECK(to_yaml(back).value() == yaml);
    }
    SECTION("the defaults") {
        VmSpec s = loaded("name: vm\n");
        CHECK(dump(loaded(to_yaml(s).value())) == dump(s));
    }
    SECTION("strings YAML would read as something else stay strings") {
        VmSpec s = loaded(
            "name: vm\nboot: {kernel: \"123/é日本😀\", cmdline: \"a: b # c, 'q' \\\"d\\\" [e] "
            "{f}\"}\n"
            "disks: [{name: d, path: \"true\", format: raw, serial: \"007\"}]\n"
            "interfaces: [{name: n, mac: \"52:54:00:00:00:01\", backend: {type: tap, name: "
            "\"1234\"}}]\n");
        CHECK(dump(loaded(to_yaml(s).value())) == dump(s));
    }
}

TEST_CASE(
    "a spec built in code with bytes that are not UTF-8 is an error to write, not an exception",
    "[spec][yaml]") {
    VmSpec s = loaded("name: vm\ndisks: [{name: d, path: d.raw, format: raw}]\n");
    s.disks[0].serial = "\xff\xfe";
    for (const auto& text : {to_json(s), to_yaml(s)}) {
        REQUIRE_FALSE(text.ok());
        CHECK(text.error().code == qshim::Errc::invalid_spec);
        CHECK(text.error().what().find("not valid UTF-8") != std::string::npos);
    }
}

TEST_CASE("PCI addresses parse and format as DDDD:BB:SS.F", "[spec][pci]") {
    CHECK(parse_pci_address("0000:00:1f.7") == PciAddress{0, 0, 0x1f, 7});
    CHECK(parse_pci_address("ffff:FF:1F.0") == PciAddress{0xffff, 0xff, 0x1f, 0});
    CHECK_FALSE(parse_pci_address("0000:00:20.0"));  // slot is 5 bits
    CHECK_FALSE(parse_pci_address("0000:00:02.8"));  // function is 3 bits
    CHECK_FALSE(parse_pci_address("00:02.0"));
    CHECK_FALSE(parse_pci_address("0000:00:02.0 "));
    CHECK_FALSE(parse_pci_address("0000:0g:02.0"));
    CHECK_FALSE(parse_pci_address(""));
    CHECK(to_string(PciAddress{0, 1, 2, 3}) == "0000:01:02.3");
    CHECK(to_string(PciAddress{0xabcd, 0xef, 0x1f, 7}) == "abcd:ef:1f.7");
    for (PciAddress a : {PciAddress{}, PciAddress{1, 2, 3, 4}, PciAddress{0xffff, 0xff, 0x1f, 7}})
        CHECK(parse_pci_address(to_string(a)) == a);
}

TEST_CASE("MAC addresses parse and format as six lowercase hex bytes", "[spec][mac]") {
    CHECK(detail::parse_mac("52:54:00:AB:cd:ef") == MacAddress{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef});
    CHECK(to_string(MacAddress{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f}) == "52:54:00:ab:cd:0f");
    CHECK_FALSE(detail::parse_mac("52-54-00-ab-cd-ef"));
    CHECK_FALSE(detail::parse_mac("52:54:00:ab:cd"));
    CHECK_FALSE(detail::parse_mac("52:54:00:ab:cd:ef:01"));
    CHECK_FALSE(detail::parse_mac("52:54:00:ab:cd:eg"));
    CHECK_FALSE(detail::parse_mac("5:54:00:ab:cd:ef"));
    CHECK(
        loaded("name: vm\ninterfaces: [{name: n, mac: 52:54:00:AB:CD:EF, backend: {type: user}}]\n")
            .interfaces.at(0)
            .mac == MacAddress{0x52, 0x54, 0, 0xab, 0xcd, 0xef});
}

TEST_CASE("placement, IOThreads, NUMA and huge pages load and write back", "[placement]") {
    auto s = qshim::test::must_parse(
        "name: vm\ncpu: {cores: 2, pinning: {vcpus: [2, 3], emulator: '0-1'}}\n"
        "memory: {size: 1Gi, hugepages: 2Mi, prealloc: true}\niothreads: 2\n"
        "numa:\n  guestNodes:\n    - {vcpus: 0, memory: 512Mi, hostNodes: 0}\n"
        "    - {vcpus: 1, memory: 512Mi}\n"
        "disks:\n  - {name: d, path: /d, format: raw, iothread: 1}\n");
    REQUIRE(s.cpu.pinning.has_value());
    CHECK(s.cpu.pinning->vcpus == std::vector<unsigned>{2, 3});
    CHECK(s.cpu.pinning->emulator == spec::HostSet{0, 1});
    CHECK(s.cpu.pinned());
    CHECK(s.memory.hugepage_bytes == 2u << 20);
    CHECK(s.memory.prealloc);
    CHECK(s.iothreads == 2);
    CHECK(s.disks[0].iothread == 1u);
    REQUIRE(s.numa.nodes.size() == 2);
    CHECK(s.numa.nodes[0].host_nodes == spec::HostSet{0});
    CHECK_FALSE(s.numa.nodes[1].host_nodes.has_value());
    // Written back and read again: the same spec.
    auto yaml = spec::to_yaml(s);
    REQUIRE(yaml.ok());
    auto again = qshim::test::must_parse(*yaml);
    CHECK(again.cpu.pinning->vcpus == s.cpu.pinning->vcpus);
    CHECK(again.cpu.pinning->emulator == s.cpu.pinning->emulator);
    CHECK(again.numa.nodes.size() == 2);
    CHECK(again.numa.nodes[1].memory_bytes == 512u << 20);
    CHECK(again.disks[0].iothread == 1u);
    CHECK(again.memory.hugepage_bytes == s.memory.hugepage_bytes);
    auto dedicated = qshim::test::must_parse(
        "name: vm\ncpu: {dedicated: true, isolateEmulatorThread: true}\nnuma: {guestNodes: "
        "auto}\n");
    auto json = spec::to_json(dedicated);
    REQUIRE(json.ok());
    CHECK_THAT(*json, Catch::Contains("\"guestNodes\": \"auto\"") &&
                          Catch::Contains("\"isolateEmulatorThread\": true"));
}
