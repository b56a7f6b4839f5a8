// The stability properties of docs/topology.md, checked over many generated specs.
#include <catch2/catch.hpp>
#include <map>
#include <qshim/topology.hpp>
#include <random>
#include <set>

#include "spec_test_util.hpp"

using namespace qshim;
using topology::DeviceKind;

namespace {

// A small deterministic generator: the same seed gives the same specs on every platform
// (raw mt19937 output is specified; distributions are not).
class Gen {
  public:
    explicit Gen(uint32_t seed) : rng_(seed) {}
    unsigned below(unsigned n) { return static_cast<unsigned>(rng_() % n); }
    bool chance(unsigned percent) { return below(100) < percent; }

    spec::Disk disk() {
        spec::Disk d;
        d.name = "d" + std::to_string(serial_++);
        d.serial = d.name;
        d.path = d.path_as_written = "/images/" + d.name + ".img";
        unsigned bus = below(10);
        d.bus = bus < 6   ? spec::DiskBus::virtio
                : bus < 9 ? spec::DiskBus::scsi
                          : spec::DiskBus::sata;
        return d;
    }
    spec::Interface nic(const std::string& vm) {
        spec::Interface i;
        i.name = "n" + std::to_string(serial_++);
        unsigned m = below(10);
        i.model = m < 6   ? spec::NicModel::virtio
                  : m < 9 ? spec::NicModel::e1000e
                          : spec::NicModel::e1000;
        i.mac = spec::default_mac(vm, i.name);
        return i;
    }
    spec::HostDevice hostdev() {
        spec::HostDevice h;
        h.name = "h" + std::to_string(serial_++);
        h.host_address = {0, uint8_t(0x10 + below(0x40)), uint8_t(below(32)), 0};
        return h;
    }

    spec::VmSpec vm() {
        spec::VmSpec s;
        s.name = "vm" + std::to_string(below(1000));
        s.source_file = "/specs/gen.yaml";
        s.base_dir = "/specs";
        unsigned disks = below(20), nics = below(8), hostdevs = chance(20) ? below(3) : 0;
        unsigned sata = 0;
        for (unsigned i = 0; i < disks; ++i) {
            auto d = disk();
            if (d.bus == spec::DiskBus::sata && ++sata > 6) d.bus = spec::DiskBus::virtio;
            s.disks.push_back(d);
        }
        for (unsigned i = 0; i < nics; ++i) s.interfaces.push_back(nic(s.name));
        for (unsigned i = 0; i < hostdevs; ++i) s.host_devices.push_back(hostdev());
        s.hotplug.disks = below(10);
        s.hotplug.interfaces = below(6);
        s.devices.rng = chance(70);
        s.devices.balloon = chance(30);
        if (chance(20)) s.devices.guest_agent = s.devices.guest_agent_as_written = "/run/qga.sock";
        return s;
    }

  private:
    std::mt19937 rng_;
    unsigned serial_ = 0;
};

struct Placement {
    std::string address;
    std::optional<unsigned> unit;
    friend bool operator==(const Placement&, const Placement&) = default;
};

std::map<std::string, Placement> placements(const topology::Topology& t) {
    std::map<std::string, Placement> out;
    for (const auto& d : t.devices)
        out[std::string(to_string(d.kind)) + "/" + d.name] = {spec::to_string(d.address), d.unit};
    return out;
}

constexpr uint32_t cases = 300;

}  // namespace

TEST_CASE("property: planning is deterministic") {
    for (uint32_t seed = 1; seed <= cases; ++seed) {
        auto s = Gen(seed).vm();
        auto a = topology::plan(s), b = topology::plan(s);
        REQUIRE(a.ok() == b.ok());
        if (a) REQUIRE(topology::to_json(*a).value() == topology::to_json(*b).value());
    }
}

TEST_CASE("property: appending a device to any class moves no existing device") {
    int checked = 0;
    for (uint32_t seed = 1; seed <= cases; ++seed) {
        Gen gen(seed);
        auto base = gen.vm();
        auto before = topology::plan(base);
        if (!before) continue;
        for (unsigned cls = 0; cls < 3; ++cls) {
            auto grown = base;
            if (cls == 0) grown.disks.push_back(gen.disk());
            if (cls == 1) grown.interfaces.push_back(gen.nic(grown.name));
            if (cls == 2) grown.host_devices.push_back(gen.hostdev());
            auto after = topology::plan(grown);
            if (!after) {
                // Only capacity may refuse the bigger spec, and it must say so.
                REQUIRE(after.error().code == Errc::topology);
                continue;
            }
            auto old_places = placements(*before), new_places = placements(*after);
            for (const auto& [name, place] : old_places) {
                INFO("seed " << seed << " class " << cls << " device " << name);
                REQUIRE(new_places.count(name));
                REQUIRE(new_places[name] == place);
            }
            for (const auto& c : topology::diff(*before, *after)) REQUIRE_FALSE(c.breaks_abi());
            ++checked;
        }
    }
    CHECK(checked > static_cast<int>(cases));  // most generated specs must really be exercised
}

TEST_CASE("property: resolving pins everything and re-planning gives the same topology") {
    for (uint32_t seed = 1; seed <= cases; ++seed) {
        auto s = Gen(seed).vm();
        auto t = topology::plan(s);
        if (!t) continue;
        // Through YAML text, as `qshim topology --resolve` users do.
        auto resolved = spec::parse_spec(spec::to_yaml(topology::resolve(s, *t)).value(),
                                         "/specs/resolved.yaml");
        INFO("seed " << seed);
        REQUIRE(resolved.ok());
        for (const auto& d : resolved->disks)
            if (d.bus == spec::DiskBus::virtio) REQUIRE(d.pci_address.has_value());
        for (const auto& i : resolved->interfaces) REQUIRE(i.pci_address.has_value());
        auto again = topology::plan(*resolved);
        REQUIRE(again.ok());
        REQUIRE(topology::to_json(*again).value() == topology::to_json(*t).value());
    }
}

TEST_CASE("property: pins are honoured exactly or rejected, never moved") {
    for (uint32_t seed = 1; seed <= cases; ++seed) {
        Gen gen(seed);
        auto s = gen.vm();
        // Pin a random subset of virtio disks to random bus numbers, some in range, some not.
        std::map<std::string, spec::PciAddress> pins;
        for (auto& d : s.disks) {
            if (d.bus != spec::DiskBus::virtio || !gen.chance(40)) continue;
            d.pci_address = spec::PciAddress{0, uint8_t(1 + gen.below(70)), 0, 0};
            pins[d.name] = *d.pci_address;
        }
        auto t = topology::plan(s);
        INFO("seed " << seed);
        if (!t) {
            REQUIRE(t.error().code == Errc::topology);
            REQUIRE_FALSE(t.error().diagnostics.empty());
            continue;
        }
        for (const auto& [name, pin] : pins)
            REQUIRE(t->find_device(name, DeviceKind::disk)->address == pin);
    }
}

TEST_CASE("property: every guest-visible address is unique and every bus is below 256") {
    for (uint32_t seed = 1; seed <= cases; ++seed) {
        auto t = topology::plan(Gen(seed).vm());
        if (!t) continue;
        std::set<std::pair<std::string, std::optional<unsigned>>> seen;
        std::set<unsigned> buses;
        for (const auto& d : t->devices) {
            bool behind_controller = d.unit.has_value();
            if (!behind_controller)
                REQUIRE(seen.insert({spec::to_string(d.address), std::nullopt}).second);
        }
        for (const auto& c : t->controllers) {
            REQUIRE(c.bus < 256);
            REQUIRE(buses.insert(c.bus).second);
        }
    }
}
