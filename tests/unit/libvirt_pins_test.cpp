// `qshim convert --pin-from`: a KubeVirt manifest keeps the addresses a libvirt domain XML gives
// its devices. The domain in tests/kubevirt/libvirt was written by Debian's libvirt 9.0 (its
// README says how); every address checked here is one of its lines.
#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>

#include "golden_file.hpp"
#include "spec_test_util.hpp"

using namespace qshim;
using Catch::Contains;
using topology::DeviceKind;
namespace fs = std::filesystem;

namespace {

const fs::path dir = fs::path(QSHIM_SOURCE_ROOT) / "tests" / "kubevirt" / "libvirt";
const fs::path domain_xml = dir / "vmi-migrated.domain.xml";
const fs::path manifest = dir / "vmi-migrated.yaml";

struct Converted {
    Result<spec::VmSpec> spec;
    std::vector<std::string> notes;
};

Converted convert(const fs::path& xml, const std::string& text) {
    Converted c{Error{}, {}};
    spec::LoadOptions o;
    o.pin_from = xml.string();
    o.notes = &c.notes;
    c.spec = spec::parse_spec(text, manifest.string(), o);
    return c;
}

// A scratch XML file, removed at the end of the test.
struct TempXml {
    fs::path path;
    explicit TempXml(const std::string& text) {
        char name[] = "/tmp/qshim-domain-XXXXXX";
        int fd = mkstemp(name);
        REQUIRE(fd >= 0);
        close(fd);
        path = name;
        std::ofstream(path) << text;
    }
    ~TempXml() { fs::remove(path); }
};

// The committed domain with one edit.
struct EditedDomain : TempXml {
    EditedDomain(const std::string& from, const std::string& to) : TempXml(edited(from, to)) {}
    static std::string edited(const std::string& from, const std::string& to) {
        std::string xml = test::read_file(domain_xml);
        auto at = xml.find(from);
        REQUIRE(at != std::string::npos);
        return xml.replace(at, from.size(), to);
    }
};

std::string errors_of(const Error& e) {
    std::string out;
    for (const auto& d : e.diagnostics) out += to_string(d) + "\n";
    return out;
}

}  // namespace

TEST_CASE("pin-from: every device keeps the address libvirt 9.0 gave it") {
    const std::string xml = test::read_file(domain_xml);
    auto c = convert(domain_xml, test::read_file(manifest));
    if (!c.spec) FAIL(errors_of(c.spec.error()) << c.spec.error().what());
    auto t = topology::plan(*c.spec);
    if (!t) FAIL(errors_of(t.error()));
    CHECK(t->machine == "pc-q35-7.2");  // libvirt's <type machine>, not the manifest's q35
    CHECK(c.spec->machine.layout == spec::PciLayout::libvirt);

    // (device in qshim's topology, the alias or element libvirt wrote, libvirt's address line)
    struct Expected {
        std::string name;
        DeviceKind kind;
        std::string address;
    };
    for (const auto& e : {Expected{"default", DeviceKind::interface, "0000:01:00.0"},
                          Expected{"scsi", DeviceKind::controller, "0000:02:00.0"},
                          Expected{"containerdisk", DeviceKind::disk, "0000:05:00.0"},
                          Expected{"data", DeviceKind::disk, "0000:06:00.0"},
                          Expected{"cloud-init", DeviceKind::system, "0000:07:00.0"},
                          Expected{"balloon", DeviceKind::system, "0000:08:00.0"},
                          Expected{"rng", DeviceKind::system, "0000:09:00.0"}}) {
        INFO(e.name);
        const auto* d = t->find_device(e.name, e.kind);
        REQUIRE(d);
        CHECK(spec::to_string(d->address) == e.address);
        // The same address, as libvirt writes it, is in the committed domain.
        CHECK_THAT(xml, Contains(fmt::format("<address type='pci' domain='0x0000' bus='0x{}' "
                                             "slot='0x00' function='0x0'/>",
                                             e.address.substr(5, 2))));
    }
    // The lun and the cdrom: libvirt's drive units are the SCSI LUN and the AHCI port.
    CHECK(t->find_device("scratch", DeviceKind::disk)->unit == 0u);
    CHECK(t->find_device("installer", DeviceKind::disk)->parent == "ide.1");
    CHECK_THAT(xml, Contains("<address type='drive' controller='0' bus='0' target='0' unit='1'/>"));
    // libvirt's root ports, index i at 00:01.0 + i - 1 with chassis i and port 0x8 + i - 1.
    for (unsigned i = 1; i <= 10; ++i) {
        INFO("root port " << i);
        const auto& port = t->controllers.at(i - 1);
        CHECK(port.chassis == i);
        CHECK_THAT(xml, Contains(fmt::format("<target chassis='{}' port='{:#x}'/>", i, port.port)));
        CHECK_THAT(xml, Contains(fmt::format("bus='0x00' slot='{:#04x}' function='{:#x}'",
                                             port.address.slot, port.address.function)));
    }
    // What libvirt has and the converted VM does not (the other notes are the volumes' files,
    // which are not on this host).
    std::vector<std::string> domain_notes;
    for (const auto& n : c.notes)
        if (!n.starts_with("spec.volumes[")) domain_notes.push_back(n);
    REQUIRE(domain_notes.size() == 2);
    CHECK_THAT(domain_notes[0], Contains("controller virtio-serial 0 at 0000:03:00.0"));
    CHECK_THAT(domain_notes[1], Contains("controller usb 0 at 0000:04:00.0"));
    test::check_golden(dir / "vmi-migrated.spec.yaml", spec::to_yaml(*c.spec).value(),
                       "after a deliberate change to --pin-from (docs/kubevirt.md)");
}

TEST_CASE("pin-from: what cannot be kept is refused at the manifest's field") {
    const std::string text = test::read_file(manifest);
    SECTION("a disk the domain does not have") {
        EditedDomain d("ua-data", "ua-other");
        auto c = convert(d.path, text);
        REQUIRE_FALSE(c.spec.ok());
        CHECK_THAT(errors_of(c.spec.error()),
                   Contains("spec.domain.devices.disks[1]: " + d.path.string() +
                            " has no <disk> with alias ua-data"));
    }
    SECTION("a device behind a bridge qshim does not lay out") {
        EditedDomain d("<controller type='pci' index='6' model='pcie-root-port'>",
                       "<controller type='pci' index='6' model='pcie-to-pci-bridge'>");
        auto c = convert(d.path, text);
        REQUIRE_FALSE(c.spec.ok());
        CHECK_THAT(errors_of(c.spec.error()),
                   Contains("spec.domain.devices.disks[1]: " + d.path.string() +
                            " puts it at 0000:06:00.0, behind a pcie-to-pci-bridge"));
    }
    SECTION("an address the manifest pins elsewhere") {
        std::string pinned = text;
        pinned.replace(pinned.find("            bus: virtio\n        - name: data"),
                       std::string("            bus: virtio\n").size(),
                       "            bus: virtio\n            pciAddress: \"0000:0a:00.0\"\n");
        auto c = convert(domain_xml, pinned);
        REQUIRE_FALSE(c.spec.ok());
        CHECK_THAT(errors_of(c.spec.error()),
                   Contains("spec.domain.devices.disks[0].disk.pciAddress: 0000:0a:00.0 here, "
                            "0000:05:00.0 in"));
    }
    SECTION("a bus other than the manifest's") {
        EditedDomain d("<target dev='vdb' bus='virtio'/>", "<target dev='sdc' bus='sata'/>");
        auto c = convert(d.path, text);
        REQUIRE_FALSE(c.spec.ok());
        CHECK_THAT(errors_of(c.spec.error()),
                   Contains("spec.domain.devices.disks[1]: a virtio disk here, a sata disk in"));
    }
    SECTION("XML that is not well-formed, or not a domain") {
        EditedDomain d("<domain type='qemu'>", "<domain type='qemu>");
        auto c = convert(d.path, text);
        REQUIRE_FALSE(c.spec.ok());
        CHECK_THAT(c.spec.error().what(), Contains("not well-formed XML"));
        TempXml network("<network><name>default</name></network>\n");
        c = convert(network.path, text);
        REQUIRE_FALSE(c.spec.ok());
        CHECK_THAT(c.spec.error().what(), Contains("not a libvirt domain"));
    }
    SECTION("a domain XML that cannot be read") {
        auto c = convert(dir / "no-such.xml", text);
        REQUIRE_FALSE(c.spec.ok());
        CHECK(c.spec.error().code == Errc::io);
        CHECK_THAT(c.spec.error().what(), Contains("no-such.xml"));
    }
    SECTION("a spec, not a manifest") {
        auto c = convert(domain_xml, "name: plain\n");
        REQUIRE_FALSE(c.spec.ok());
        CHECK_THAT(c.spec.error().what(), Contains("takes a KubeVirt manifest"));
    }
}

TEST_CASE("pin-from: a machine type Debian's QEMU does not have is refused") {
    EditedDomain d("machine='pc-q35-7.2'", "machine='pc-q35-rhel9.2.0'");
    auto c = convert(d.path, test::read_file(manifest));
    REQUIRE_FALSE(c.spec.ok());
    CHECK_THAT(errors_of(c.spec.error()), Contains("must be q35 or a versioned q35 type"));
}

TEST_CASE("sataPort: sata disks only, each port once") {
    auto p = test::problems(R"(
name: s
disks:
  - {name: a, path: a.img, format: raw, bus: sata, sataPort: 2}
  - {name: b, path: b.img, format: raw, bus: sata, sataPort: 2}
  - {name: c, path: c.img, format: raw, sataPort: 1}
  - {name: d, path: d.img, format: raw, bus: sata, sataPort: 6}
)");
    REQUIRE(p.size() == 3);
    CHECK_THAT(p[0], Contains("disks[1].sataPort: SATA port 2 is also used by disks[0]"));
    CHECK_THAT(p[1], Contains("disks[2].sataPort: only sata disks sit on an AHCI port"));
    CHECK_THAT(p[2], Contains("disks[3].sataPort"));
}
