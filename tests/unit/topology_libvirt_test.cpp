// The libvirt layout (machine.layout: libvirt) and AHCI port pins: one example per rule of
// docs/topology.md "The libvirt layout".
#include <catch2/catch.hpp>
#include <qshim/topology.hpp>

#include "spec_test_util.hpp"

using namespace qshim;
using qshim::test::must_parse;
using topology::DeviceKind;

namespace {

topology::Topology must_plan(const std::string& yaml) {
    auto t = topology::plan(must_parse(yaml));
    if (!t) FAIL(t.error().what());
    return std::move(t).value();
}

std::string addr(const topology::Topology& t, const std::string& name, DeviceKind kind) {
    const auto* d = t.find_device(name, kind);
    REQUIRE(d != nullptr);
    return spec::to_string(d->address);
}

std::vector<std::string> problems(const std::string& yaml) {
    auto t = topology::plan(must_parse(yaml));
    REQUIRE_FALSE(t.ok());
    CHECK(t.error().code == Errc::topology);
    std::vector<std::string> out;
    for (const auto& d : t.error().diagnostics) out.push_back(d.path + ": " + d.reason);
    return out;
}

// Devices pinned as libvirt 9.0 placed them for tests/kubevirt/libvirt/define.xml.
const char* pinned = R"(
name: moved
machine: {layout: libvirt}
disks:
  - {name: root, path: r.img, format: raw, pciAddress: "0000:05:00.0"}
  - {name: data, path: d.img, format: raw, pciAddress: "0000:06:00.0"}
  - {name: lun, path: l.img, format: raw, bus: scsi, lun: 0}
  - {name: cd, path: c.iso, format: raw, bus: sata, device: cdrom, sataPort: 1}
interfaces: [{name: net, backend: {type: user}, pciAddress: "0000:01:00.0"}]
devices:
  balloon: true
  rng: true
  pciAddresses: {scsi: "0000:02:00.0", balloon: "0000:08:00.0", rng: "0000:09:00.0"}
hotplug: {disks: 2, interfaces: 2}
)";

}  // namespace

TEST_CASE(
    "libvirt layout: root ports from 00:01.0, port i holding bus i, as libvirt numbers them") {
    auto t = must_plan(pinned);
    // 6 PCIe devices pinned up to port 9, 4 spares: 10 ports.
    REQUIRE(t.controllers.size() == 10);
    for (unsigned i = 1; i <= t.controllers.size(); ++i) {
        const auto& c = t.controllers[i - 1];
        INFO("port " << i);
        CHECK(c.id == "pci." + std::to_string(i));
        CHECK(c.model == "pcie-root-port");
        CHECK(c.parent == "pcie.0");
        CHECK(c.address == spec::PciAddress{0, 0, uint8_t(1 + (i - 1) / 8), uint8_t((i - 1) % 8)});
        CHECK(c.bus == i);
        CHECK(c.chassis == i);
        CHECK(c.port == 8u * c.address.slot + c.address.function);  // 0x8, 0x9, ... 0x10
        CHECK(c.hotplug);
        CHECK(c.multifunction == ((i - 1) % 8 == 0));
        CHECK(c.bus_reserve == 0);  // one bus each: nothing to pad
    }
    CHECK(t.controllers[8].port == 0x10);
}

TEST_CASE("libvirt layout: pins are honoured, built-in devices included") {
    auto t = must_plan(pinned);
    CHECK(addr(t, "net", DeviceKind::interface) == "0000:01:00.0");
    CHECK(addr(t, "scsi", DeviceKind::controller) == "0000:02:00.0");
    CHECK(addr(t, "root", DeviceKind::disk) == "0000:05:00.0");
    CHECK(addr(t, "data", DeviceKind::disk) == "0000:06:00.0");
    CHECK(addr(t, "balloon", DeviceKind::system) == "0000:08:00.0");
    CHECK(addr(t, "rng", DeviceKind::system) == "0000:09:00.0");
    CHECK(t.find_device("root", DeviceKind::disk)->parent == "pci.5");
    CHECK(t.find_device("lun", DeviceKind::disk)->unit == 0u);
    CHECK(t.find_device("cd", DeviceKind::disk)->parent == "ide.1");
    CHECK(t.find_device("cd", DeviceKind::disk)->unit == 1u);
}

TEST_CASE("libvirt layout: empty ports serve hotplug, the lowest hotplug.disks ones disks") {
    auto t = must_plan(pinned);
    // Empty: 3, 4 and 7 below the highest pin, then 10.
    REQUIRE(t.hotplug_ports.size() == 4);
    CHECK(t.hotplug_ports[0].cls == "disks");
    CHECK(spec::to_string(t.hotplug_ports[0].address) == "0000:03:00.0");
    CHECK(t.hotplug_ports[1].cls == "disks");
    CHECK(spec::to_string(t.hotplug_ports[1].address) == "0000:04:00.0");
    CHECK(t.hotplug_ports[2].cls == "interfaces");
    CHECK(spec::to_string(t.hotplug_ports[2].address) == "0000:07:00.0");
    CHECK(spec::to_string(t.hotplug_ports[3].port_address) == "0000:00:02.1");
}

TEST_CASE("libvirt layout: unpinned devices take the lowest free ports, disks first") {
    auto t = must_plan(R"(
name: free
machine: {layout: libvirt}
disks: [{name: a, path: a.img, format: raw}, {name: b, path: b.img, format: raw, pciAddress: "0000:01:00.0"}]
interfaces: [{name: n, backend: {type: user}}]
hotplug: {disks: 0, interfaces: 0}
)");
    CHECK(addr(t, "b", DeviceKind::disk) == "0000:01:00.0");
    CHECK(addr(t, "a", DeviceKind::disk) == "0000:02:00.0");
    CHECK(addr(t, "n", DeviceKind::interface) == "0000:03:00.0");
    CHECK(addr(t, "rng", DeviceKind::system) == "0000:04:00.0");  // rng is on by default
    CHECK(t.controllers.size() == 4);
    CHECK(t.hotplug_ports.empty());
}

TEST_CASE("libvirt layout: resolving pins everything, and the result plans the same") {
    auto s = must_parse(R"(
name: free
machine: {layout: libvirt}
disks: [{name: a, path: a.img, format: raw}, {name: c, path: c.iso, format: raw, bus: sata, device: cdrom}]
interfaces: [{name: n, backend: {type: user}}]
devices: {balloon: true}
)");
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    auto resolved = topology::resolve(s, *t);
    CHECK(resolved.devices.pci_addresses.rng.has_value());
    CHECK(resolved.devices.pci_addresses.balloon.has_value());
    CHECK(resolved.disks[1].sata_port == 0u);
    auto again = topology::plan(resolved);
    REQUIRE(again.ok());
    CHECK(topology::to_json(*again).value() == topology::to_json(*t).value());
}

TEST_CASE("libvirt layout: what it cannot hold is refused, naming the field") {
    auto p = problems(R"(
name: bad
machine: {layout: libvirt}
disks:
  - {name: a, path: a.img, format: raw, pciAddress: "0000:01:00.0"}
  - {name: b, path: b.img, format: raw, pciAddress: "0000:01:00.0"}
  - {name: c, path: c.img, format: raw, pciAddress: "0000:f1:00.0"}
  - {name: d, path: d.img, format: raw, pciAddress: "0000:02:03.0"}
interfaces: [{name: old, model: e1000, backend: {type: user}}]
devices: {balloon: false, pciAddresses: {balloon: "0000:08:00.0"}}
)");
    REQUIRE(p.size() == 5);
    CHECK_THAT(p[0], Catch::Contains("interfaces[0].model: e1000 is conventional PCI"));
    CHECK_THAT(p[1],
               Catch::Contains("devices.pciAddresses.balloon: pins a device the VM does not have"));
    CHECK_THAT(p[2], Catch::Contains(
                         "disks[1].pciAddress: 0000:01:00.0 is already pinned by disks[0] (a)"));
    CHECK_THAT(
        p[3], Catch::Contains("disks[2].pciAddress: 0000:f1:00.0 is not a place for PCIe devices"));
    CHECK_THAT(p[4], Catch::Contains("disks[3].pciAddress"));
}

TEST_CASE("regions layout: built-in devices cannot be pinned") {
    auto p = problems("name: r\ndevices: {pciAddresses: {rng: \"0000:61:00.0\"}}\n");
    REQUIRE(p.size() == 1);
    CHECK_THAT(p[0], Catch::Contains("devices.pciAddresses: the regions layout"));
}

TEST_CASE("sataPort pins an AHCI port; the others fill the lowest free ports in list order") {
    auto t = must_plan(R"(
name: s
disks:
  - {name: a, path: a.img, format: raw, bus: sata}
  - {name: b, path: b.img, format: raw, bus: sata, sataPort: 0}
  - {name: c, path: c.img, format: raw, bus: sata}
)");
    CHECK(t.find_device("b", DeviceKind::disk)->parent == "ide.0");
    CHECK(t.find_device("a", DeviceKind::disk)->parent == "ide.1");
    CHECK(t.find_device("c", DeviceKind::disk)->parent == "ide.2");
    CHECK(addr(t, "a", DeviceKind::disk) == "0000:00:1f.2");
}
