// Topology v1 placement rules, one example per rule, checked against the contract's numbers.
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

const topology::Controller* controller(const topology::Topology& t, const std::string& id) {
    for (const auto& c : t.controllers)
        if (c.id == id) return &c;
    return nullptr;
}

Error plan_error(const std::string& yaml) {
    auto t = topology::plan(must_parse(yaml));
    REQUIRE_FALSE(t.ok());
    CHECK(t.error().code == Errc::topology);
    return t.error();
}

}  // namespace

TEST_CASE("machine type q35 resolves to the versioned type of topology v1") {
    auto t = must_plan("name: m\n");
    CHECK(t.machine == "pc-q35-7.2");
    CHECK(t.version == 1);
    CHECK(must_plan("name: m\nmachine: {type: pc-q35-6.2}\n").machine == "pc-q35-6.2");
}

TEST_CASE("each class lives in its own region of buses") {
    auto t = must_plan(R"(
name: r
disks: [{name: a, path: a.img, format: raw}, {name: b, path: b.img, format: raw}]
interfaces: [{name: n, backend: {type: user}}]
hostDevices: [{name: gpu, hostAddress: "0000:65:00.0"}]
devices: {rng: true, balloon: true}
)");
    CHECK(addr(t, "a", DeviceKind::disk) == "0000:01:00.0");
    CHECK(addr(t, "b", DeviceKind::disk) == "0000:02:00.0");
    CHECK(addr(t, "n", DeviceKind::interface) == "0000:41:00.0");  // bus 65
    CHECK(addr(t, "gpu", DeviceKind::hostdev) == "0000:69:00.0");  // bus 105
    CHECK(addr(t, "rng", DeviceKind::system) == "0000:61:00.0");   // bus 97
    CHECK(addr(t, "balloon", DeviceKind::system) == "0000:63:00.0");
    // Root ports: 8 per slot, disks from 00:02.0, interfaces from 00:0a.0.
    REQUIRE(controller(t, "rp.disks.0"));
    CHECK(spec::to_string(controller(t, "rp.disks.0")->address) == "0000:00:02.0");
    CHECK(spec::to_string(controller(t, "rp.interfaces.0")->address) == "0000:00:0a.0");
}

TEST_CASE("the last port of a region reserves buses up to the next region") {
    auto t = must_plan(R"(
name: pad
disks: [{name: a, path: a.img, format: raw}]
interfaces: [{name: n, backend: {type: user}}]
hotplug: {disks: 0, interfaces: 0}
devices: {rng: false}
)");
    REQUIRE(t.controllers.size() == 2);
    CHECK(t.controllers[0].bus == 1);
    CHECK(t.controllers[0].bus_reserve == 63);  // buses 2..64 skipped
    CHECK(t.controllers[1].bus == 65);
    CHECK(t.controllers[1].bus_reserve == 0);  // last port: nothing to pad
}

TEST_CASE("hotplug capacity is a set of empty ports per class with deterministic addresses") {
    auto t = must_plan(R"(
name: hp
disks: [{name: a, path: a.img, format: raw}]
hotplug: {disks: 3, interfaces: 2}
)");
    std::vector<std::string> disk_ports, nic_ports;
    for (const auto& h : t.hotplug_ports)
        (h.cls == "disks" ? disk_ports : nic_ports).push_back(spec::to_string(h.address));
    CHECK(disk_ports == std::vector<std::string>{"0000:02:00.0", "0000:03:00.0", "0000:04:00.0"});
    CHECK(nic_ports == std::vector<std::string>{"0000:41:00.0", "0000:42:00.0"});
}

TEST_CASE("defaults reserve 8 disk and 4 interface hotplug ports") {
    auto t = must_plan("name: d\n");
    CHECK(std::count_if(t.hotplug_ports.begin(), t.hotplug_ports.end(),
                        [](auto& h) { return h.cls == "disks"; }) == 8);
    CHECK(std::count_if(t.hotplug_ports.begin(), t.hotplug_ports.end(),
                        [](auto& h) { return h.cls == "interfaces"; }) == 4);
}

TEST_CASE(
    "scsi disks share one controller and get LUNs in list order; sata uses the built-in AHCI") {
    auto t = must_plan(R"(
name: s
disks:
  - {name: s1, path: a.img, format: raw, bus: scsi}
  - {name: v1, path: b.img, format: raw}
  - {name: s2, path: c.img, format: raw, bus: scsi}
  - {name: c1, path: d.iso, format: raw, bus: sata, device: cdrom}
)");
    const auto* s1 = t.find_device("s1", DeviceKind::disk);
    const auto* s2 = t.find_device("s2", DeviceKind::disk);
    REQUIRE((s1 && s2));
    CHECK(s1->unit == 0u);
    CHECK(s2->unit == 1u);
    CHECK(spec::to_string(s1->address) == "0000:62:00.0");  // the HBA, bus 98
    CHECK(addr(t, "v1", DeviceKind::disk) == "0000:01:00.0");
    const auto* c1 = t.find_device("c1", DeviceKind::disk);
    REQUIRE(c1);
    CHECK(c1->driver == "ide-cd");
    CHECK(spec::to_string(c1->address) == "0000:00:1f.2");
    CHECK(t.find_device("scsi", DeviceKind::controller) != nullptr);
}

TEST_CASE("e1000 NICs sit behind the PCIe-to-PCI bridge from slot 1") {
    auto t = must_plan(R"(
name: l
interfaces:
  - {name: a, model: e1000, backend: {type: user}}
  - {name: b, model: e1000, backend: {type: user}}
)");
    CHECK(addr(t, "a", DeviceKind::interface) == "0000:7a:01.0");
    CHECK(addr(t, "b", DeviceKind::interface) == "0000:7a:02.0");
    const auto* bridge = controller(t, "bridge.legacy");
    REQUIRE(bridge);
    CHECK(bridge->parent == "rp.legacy.0");
    CHECK(spec::to_string(bridge->address) == "0000:79:00.0");
}

TEST_CASE("pins are honoured and unpinned devices fill the lowest free places") {
    auto t = must_plan(R"(
name: p
disks:
  - {name: a, path: a.img, format: raw}
  - {name: b, path: b.img, format: raw, pciAddress: "0000:01:00.0"}
  - {name: c, path: c.img, format: raw, pciAddress: "0000:05:00.0"}
hotplug: {disks: 0}
)");
    CHECK(addr(t, "b", DeviceKind::disk) == "0000:01:00.0");
    CHECK(addr(t, "a", DeviceKind::disk) == "0000:02:00.0");
    CHECK(addr(t, "c", DeviceKind::disk) == "0000:05:00.0");
    // Ports up to the highest pin exist; the gaps are hotplug capacity.
    std::vector<std::string> spare;
    for (const auto& h : t.hotplug_ports)
        if (h.cls == "disks") spare.push_back(spec::to_string(h.address));
    CHECK(spare == std::vector<std::string>{"0000:03:00.0", "0000:04:00.0"});
}

TEST_CASE("scsi disks: LUNs in list order, pinned LUNs kept, the rest fill the lowest free ones") {
    auto plain = must_plan(R"(
name: s
disks:
  - {name: a, path: a.img, format: raw, bus: scsi}
  - {name: b, path: b.img, format: raw, bus: scsi}
  - {name: c, path: c.img, format: raw, bus: scsi}
)");
    for (auto [name, lun] : {std::pair{"a", 0u}, {"b", 1u}, {"c", 2u}})
        CHECK(plain.find_device(name, DeviceKind::disk)->unit == lun);
    auto pinned = must_plan(R"(
name: s
disks:
  - {name: a, path: a.img, format: raw, bus: scsi, lun: 1}
  - {name: b, path: b.img, format: raw, bus: scsi}
  - {name: c, path: c.img, format: raw, bus: scsi, lun: 7}
  - {name: d, path: d.img, format: raw, bus: scsi}
  - {name: cd, bus: scsi, device: cdrom}
)");
    for (auto [name, lun] : {std::pair{"a", 1u}, {"b", 0u}, {"c", 7u}, {"d", 2u}, {"cd", 3u}})
        CHECK(pinned.find_device(name, DeviceKind::disk)->unit == lun);
    CHECK(pinned.find_device("cd", DeviceKind::disk)->driver == "scsi-cd");
    // resolve() writes the LUNs down: removing one disk moves no other.
    auto resolved = topology::resolve(must_parse(R"(
name: s
disks:
  - {name: a, path: a.img, format: raw, bus: scsi}
  - {name: b, path: b.img, format: raw, bus: scsi}
  - {name: c, path: c.img, format: raw, bus: scsi}
)"),
                                      plain);
    resolved.disks.erase(resolved.disks.begin() + 1);
    auto after = topology::plan(resolved);
    REQUIRE(after);
    CHECK(after->find_device("c", DeviceKind::disk)->unit == 2);
    CHECK(topology::diff(plain, *after).size() == 1);  // b removed, nothing moved
}

TEST_CASE("hotplug.scsi keeps a SCSI controller without scsi disks, at its fixed place") {
    auto without = must_plan("name: s\n");
    auto with = must_plan("name: s\nhotplug: {scsi: true}\n");
    auto scsi = [](const topology::Topology& t) -> const topology::Device* {
        for (const auto& d : t.devices)
            if (d.driver == "virtio-scsi-pci") return &d;
        return nullptr;
    };
    CHECK(scsi(without) == nullptr);
    REQUIRE(scsi(with) != nullptr);
    auto disk = must_plan("name: s\ndisks: [{name: a, path: a.img, format: raw, bus: scsi}]\n");
    REQUIRE(scsi(disk) != nullptr);
    CHECK(scsi(with)->address == scsi(disk)->address);
    // Every other device stays where it was.
    for (const auto& d : without.devices) {
        const auto* same = with.find_device(d.name, d.kind);
        REQUIRE(same != nullptr);
        CHECK(same->address == d.address);
    }
}

TEST_CASE("conflicting and impossible pins are rejected naming both devices") {
    auto e = plan_error(R"(
name: c
disks:
  - {name: a, path: a.img, format: raw, pciAddress: "0000:03:00.0"}
  - {name: b, path: b.img, format: raw, pciAddress: "0000:03:00.0"}
)");
    REQUIRE(e.diagnostics.size() == 1);
    CHECK(e.diagnostics[0].path == "disks[1].pciAddress");
    CHECK_THAT(e.diagnostics[0].reason, Catch::Contains("disks[0] (a)"));

    auto wrong_region = plan_error(R"(
name: w
disks: [{name: a, path: a.img, format: raw, pciAddress: "0000:41:00.0"}]
)");
    CHECK_THAT(wrong_region.diagnostics[0].reason, Catch::Contains("0000:01:00.0 to 0000:40:00.0"));
    auto wrong_slot = plan_error(R"(
name: w
interfaces: [{name: n, backend: {type: user}, pciAddress: "0000:41:01.0"}]
)");
    CHECK(wrong_slot.diagnostics[0].path == "interfaces[0].pciAddress");
}

TEST_CASE("specs beyond the layout's capacity are rejected, not half-built") {
    std::string many = "name: big\nhotplug: {disks: 0}\ndisks:\n";
    for (int i = 0; i < 65; ++i)
        many += "  - {name: d" + std::to_string(i) + ", path: x.img, format: raw}\n";
    auto e = plan_error(many);
    CHECK_THAT(e.diagnostics[0].reason, Catch::Contains("holds 64"));

    auto spare =
        plan_error("name: s\nhotplug: {disks: 64}\ndisks: [{name: a, path: a.img, format: raw}]\n");
    CHECK(spare.diagnostics[0].path == "hotplug.disks");

    std::string sata = "name: sata\ndisks:\n";
    for (int i = 0; i < 7; ++i)
        sata += "  - {name: d" + std::to_string(i) + ", path: x.img, format: raw, bus: sata}\n";
    CHECK_THAT(plan_error(sata).diagnostics[0].reason, Catch::Contains("6 ports"));
}

TEST_CASE("the first disk port always exists: it anchors bus numbering") {
    auto t = must_plan("name: a\nhotplug: {disks: 0, interfaces: 1}\n");
    REQUIRE_FALSE(t.controllers.empty());
    CHECK(t.controllers[0].id == "rp.disks.0");
    CHECK(t.controllers[0].bus_reserve == 63);
}

TEST_CASE("diff reports moves, removals and changed identity, and ignores additions") {
    auto before = must_plan(R"(
name: x
disks: [{name: a, path: a.img, format: raw}, {name: b, path: b.img, format: raw}]
interfaces: [{name: n, backend: {type: user}}]
)");
    auto same_plus = must_plan(R"(
name: x
disks: [{name: a, path: a.img, format: raw}, {name: b, path: b.img, format: raw}, {name: c, path: c.img, format: raw}]
interfaces: [{name: n, backend: {type: user}}]
)");
    auto changes = topology::diff(before, same_plus);
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].type == topology::Change::Type::added);
    CHECK_FALSE(changes[0].breaks_abi());

    auto reordered = must_plan(R"(
name: x
disks: [{name: b, path: b.img, format: raw}, {name: a, path: a.img, format: raw, serial: other}]
interfaces: [{name: n, backend: {type: user}, mac: "52:54:00:00:00:01"}]
)");
    std::vector<std::string> lines;
    for (const auto& c : topology::diff(before, reordered)) lines.push_back(topology::to_string(c));
    CHECK(lines == std::vector<std::string>{
                       "moved: disk b: 0000:02:00.0 -> 0000:01:00.0",
                       "moved: disk a: 0000:01:00.0 -> 0000:02:00.0",
                       "changed: disk a: serial a -> other",
                       "changed: interface n: MAC " + spec::to_string(spec::default_mac("x", "n")) +
                           " -> 52:54:00:00:00:01",
                   });
}

TEST_CASE(
    "a topology planned from a spec built in code with bytes that are not UTF-8 is an error "
    "to write") {
    auto s = must_parse("name: vm\ndisks: [{name: d, path: d.raw, format: raw}]\n");
    s.disks[0].name = "d\xc3";
    auto t = topology::plan(s);
    REQUIRE(t.ok());
    for (const auto& text : {topology::to_json(*t), topology::to_yaml(*t)}) {
        REQUIRE_FALSE(text.ok());
        CHECK(text.error().code == Errc::invalid_spec);
    }
    const auto* d = t->find_device("d\xc3", DeviceKind::disk);
    REQUIRE(d);
    CHECK_FALSE(topology::to_json(*d).ok());
}
