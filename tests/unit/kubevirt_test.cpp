// KubeVirt manifests: the corpus in tests/kubevirt converts to its golden specs and topologies,
// tests/kubevirt/refused is refused with exactly its golden messages, and the rules behind them.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <sstream>

#include "golden_file.hpp"

using namespace qshim;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

const fs::path corpus = fs::path(QSHIM_SOURCE_ROOT) / "tests" / "kubevirt";

void check_golden(const fs::path& file, const std::string& actual) {
    test::check_golden(file, actual, "after a deliberate change to the mapping (docs/kubevirt.md)");
}

std::vector<fs::path> manifests(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        auto ext = e.path().extension();
        if (ext == ".yaml" || ext == ".json") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

spec::LoadOptions corpus_options() {
    spec::LoadOptions o;
    o.volume_roots.secrets = "secrets";  // relative: next to the manifests
    return o;
}

std::string errors_of(const Error& e) {
    std::string out;
    for (const auto& d : e.diagnostics) out += to_string(d) + "\n";
    return out;
}

Result<spec::VmSpec> convert(std::string_view text, const spec::LoadOptions& o = {}) {
    return spec::parse_spec(text, "vmi.yaml", o);
}

const char* minimal = R"(apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: m}
spec:
  domain:
    resources: {requests: {memory: 1Gi}}
    devices:
      disks: [{name: root, disk: {bus: virtio}}]
  volumes: [{name: root, containerDisk: {image: example/root:1}}]
)";

}  // namespace

TEST_CASE("kubevirt: the corpus converts to its golden specs and topologies") {
    auto files = manifests(corpus);
    REQUIRE(files.size() >= 6);
    for (const auto& path : files) {
        SECTION(path.filename().string()) {
            auto s = spec::load_spec(path.string(), corpus_options());
            INFO((s.ok() ? std::string() : errors_of(s.error()) + s.error().what()));
            REQUIRE(s.ok());
            auto t = topology::plan(*s);
            INFO((t.ok() ? std::string() : t.error().what()));
            REQUIRE(t.ok());
            auto stem = path.stem().string();
            check_golden(corpus / "golden" / (stem + ".spec.yaml"), spec::to_yaml(*s).value());
            check_golden(corpus / "golden" / (stem + ".topology.json"),
                         topology::to_json(*t).value());
        }
    }
}

TEST_CASE("kubevirt: the refused corpus names every unsupported field") {
    auto files = manifests(corpus / "refused");
    REQUIRE(files.size() >= 6);
    for (const auto& path : files) {
        SECTION(path.filename().string()) {
            // Named relative to the corpus, so the messages do not depend on the checkout.
            auto name = "refused/" + path.filename().string();
            auto s = spec::parse_spec(test::read_file(path), name);
            REQUIRE_FALSE(s.ok());
            CHECK(s.error().code == Errc::invalid_spec);
            REQUIRE_FALSE(s.error().diagnostics.empty());
            check_golden(fs::path(path).replace_extension(".errors"), errors_of(s.error()));
        }
    }
}

TEST_CASE("kubevirt: a manifest is told from a spec by apiVersion or kind") {
    CHECK(spec::is_kubevirt_manifest(minimal));
    CHECK(spec::is_kubevirt_manifest("{\"kind\": \"Pod\"}"));
    CHECK_FALSE(spec::is_kubevirt_manifest("name: vm\n"));
    CHECK_FALSE(spec::is_kubevirt_manifest("not: [valid"));
}

TEST_CASE("kubevirt: volume roots move where volumes are found") {
    char dir_template[] = "/tmp/qshim-kubevirt-XXXXXX";
    REQUIRE(mkdtemp(dir_template));
    const fs::path dir = dir_template;
    spec::LoadOptions o;
    o.volume_roots.container_disks = dir.string();
    SECTION("a container disk holding qcow2 is opened as qcow2, by its magic") {
        std::ofstream(dir / "disk_0.img", std::ios::binary) << std::string("QFI\xfb\0\0\0\3", 8);
        auto s = convert(minimal, o);
        REQUIRE(s.ok());
        CHECK(s->disks.at(0).path == (dir / "disk_0.img").string());
        CHECK(s->disks.at(0).format == spec::DiskFormat::qcow2);
        CHECK(s->disks.at(0).ephemeral);
    }
    SECTION("anything else is raw") {
        std::ofstream(dir / "disk_0.img", std::ios::binary) << "raw bytes";
        auto s = convert(minimal, o);
        REQUIRE(s.ok());
        CHECK(s->disks.at(0).format == spec::DiskFormat::raw);
    }
    fs::remove_all(dir);
}

TEST_CASE("kubevirt: defaults are KubeVirt's") {
    auto s = convert(minimal);
    REQUIRE(s.ok());
    CHECK(s->cpu.model == "host");       // host-model
    CHECK(s->devices.balloon);           // autoattachMemBalloon
    CHECK_FALSE(s->devices.rng);         // only with rng: {}
    REQUIRE(s->interfaces.size() == 1);  // autoattachPodInterface
    CHECK(s->interfaces[0].name == "default");
    CHECK(s->interfaces[0].backend.type == spec::BackendType::user);
    CHECK(s->lifecycle.grace_period_seconds == 30);
    CHECK(s->memory.size_bytes == 1ull << 30);

    std::string sata = minimal;
    sata.replace(sata.find("{bus: virtio}"), 13, "{}");
    auto d = convert(sata);
    REQUIRE(d.ok());
    CHECK(d->disks.at(0).bus == spec::DiskBus::sata);  // KubeVirt's default bus on x86

    std::string efi = minimal;
    efi.replace(efi.find("    devices:"), 0, "    firmware: {bootloader: {efi: {}}}\n");
    auto e = convert(efi);
    REQUIRE(e.ok());
    CHECK(e->firmware.type == spec::FirmwareType::uefi);
    CHECK(e->firmware.secure_boot);  // on unless secureBoot: false

    std::string decimal = minimal;
    decimal.replace(decimal.find("1Gi"), 3, "1024M");
    auto m = convert(decimal);
    REQUIRE(m.ok());
    CHECK(m->memory.size_bytes == 977ull << 20);  // rounded up to whole MiB, as libvirt does

    std::string cpus = minimal;
    cpus.replace(cpus.find("{memory: 1Gi}"), 13, "{memory: 1Gi, cpu: \"3\"}");
    auto c = convert(cpus);
    REQUIRE(c.ok());
    CHECK(c->cpu.count() == 3);  // no topology: sockets from the CPU request
}

TEST_CASE("kubevirt: a volume no disk names gets a sata disk, as KubeVirt's, and a note") {
    std::string orphan = minimal;
    orphan.insert(orphan.rfind("]"),
                  ", {name: data, persistentVolumeClaim: {claimName: data}}"
                  ", {name: cfg, configMap: {name: app, volumeLabel: appcfg}}");
    spec::LoadOptions o;
    std::vector<std::string> notes;
    o.notes = &notes;
    auto s = convert(orphan, o);
    REQUIRE(s.ok());
    REQUIRE(s->disks.size() == 3);
    CHECK(s->disks[1].name == "data");
    CHECK(s->disks[1].bus == spec::DiskBus::sata);
    CHECK(s->disks[1].path == "/var/run/kubevirt-private/vmi-disks/data/disk.img");
    CHECK(s->disks[2].name == "cfg");
    CHECK(s->disks[2].bus == spec::DiskBus::sata);
    CHECK(s->disks[2].folder == "/var/run/kubevirt-private/config-map/cfg");
    CHECK(s->disks[2].volume_label == "appcfg");
    CHECK_FALSE(s->disks[2].read_only);  // a sata disk: QEMU's ide-hd cannot be read-only
    // Not here to read (another host): the container disk's format and the claim's kind.
    REQUIRE(notes.size() == 4);
    CHECK(notes[0] ==
          "spec.volumes[0] (root): /var/run/kubevirt/container-disks/disk_0.img is not here to "
          "read: taken as raw");
    CHECK(notes[2] ==
          "spec.volumes[1] (data): neither /dev/data nor "
          "/var/run/kubevirt-private/vmi-disks/data/disk.img is here: taken as a filesystem "
          "claim, not a block one");
    CHECK(notes[1] ==
          "spec.volumes[1] (data, line 9): no disk or filesystem names it: it gets a sata disk of "
          "its own, as KubeVirt's admission webhook gives it");
    CHECK_THAT(notes[3], Catch::StartsWith("spec.volumes[2] (cfg, line 9)"));
    // Without a place for notes, the same VM.
    CHECK(convert(orphan)->disks.size() == 3);
}

TEST_CASE("kubevirt: cloud-init data in base64 is decoded, and refused when it is not base64") {
    std::string m = minimal;
    m.replace(m.find("disks: ["), 8, "disks: [{name: ci, disk: {}}, ");
    m.replace(m.find("volumes: ["), 10,
              "volumes: [{name: ci, cloudInitNoCloud: {userDataBase64: I2Nsb3VkLWNvbmZpZwo=}}, ");
    auto s = convert(m);
    INFO((s.ok() ? std::string() : errors_of(s.error())));
    REQUIRE(s.ok());
    REQUIRE(s->cloud_init);
    CHECK(s->cloud_init->user_data.text == "#cloud-config\n");
    CHECK(s->disks.size() == 1);  // the seed is qshim's own device, not a disk

    m.replace(m.find("I2Nsb3VkLWNvbmZpZwo="), 20, "not*base64");
    auto bad = convert(m);
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(errors_of(bad.error()),
               Contains("spec.volumes[0].cloudInitNoCloud.userDataBase64: is not base64"));
}

TEST_CASE("kubevirt: a volume name never reaches a path unless it is a DNS label") {
    std::string m = minimal;
    for (size_t at; (at = m.find("name: root")) != std::string::npos;)
        m.replace(at, 10, "name: ../../etc");
    auto s = convert(m);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(errors_of(s.error()), Contains("spec.volumes[0].name: must be a DNS label"));
}

TEST_CASE("kubevirt: hostile manifests are refused, never crash") {
    for (const char* text : {
             "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\n",
             "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: 3\nspec: []\n",
             "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata: {name: a}\nspec: "
             "{template: {spec: {domain: []}}}\n",
             "apiVersion: [1]\nkind: {a: b}\n",
             "kind: VirtualMachineInstance\n",
             "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: a}\n"
             "spec: {domain: {devices: {disks: [3, {name: x}], interfaces: [{}]}}, volumes: "
             "[{name: x}, {}], networks: [{}]}\n",
         }) {
        auto s = convert(text);
        CHECK_FALSE(s.ok());
        if (!s.ok()) CHECK_FALSE(s.error().diagnostics.empty());
    }
}
