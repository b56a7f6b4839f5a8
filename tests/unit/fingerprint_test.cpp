// The guest-ABI fingerprint: what is in it, what is not, and that its digest never changes.
#include <catch2/catch.hpp>
#include <qshim/fingerprint.hpp>

#include "spec_test_util.hpp"

using namespace qshim;
using qshim::test::must_parse;

namespace {

const std::string base = R"(name: fp
cpu: {cores: 2}
memory: {size: 512Mi}
disks: [{name: root, path: root.img, format: raw}, {name: data, path: data.img, format: qcow2}]
interfaces: [{name: n1, backend: {type: user}}]
)";

topology::Fingerprint fingerprint_of(const std::string& yaml) {
    auto spec = must_parse(yaml);
    auto topo = topology::plan(spec);
    REQUIRE(topo);
    return topology::fingerprint(spec, *topo);
}

std::string fact(const topology::Fingerprint& fp, const std::string& key) {
    for (const auto& [k, v] : fp.facts)
        if (k == key) return v;
    return "(absent)";
}

}  // namespace

TEST_CASE("the fingerprint lists the guest ABI") {
    auto fp = fingerprint_of(base);
    CHECK(fact(fp, "topologyVersion") == "1");
    CHECK(fact(fp, "machine") == "pc-q35-7.2");
    CHECK(fact(fp, "cpu.cores") == "2");
    CHECK(fact(fp, "memory.size") == std::to_string(512ull << 20));
    CHECK(fact(fp, "disks[data]") == "0000:02:00.0");
    CHECK(fact(fp, "disks[data].model") == "virtio-blk-pci");
    CHECK(fact(fp, "disks[data].serial") == "data");
    CHECK(fact(fp, "interfaces[n1].mac").size() == 17);
    CHECK(fact(fp, "controllers[rp.disks.0].model") == "pcie-root-port");
}

TEST_CASE("the digest of a spec never changes (an old and a new qshim must agree)") {
    // If this fails, a change altered the facts or the digest: old and new qshim could no
    // longer migrate to each other. Change the facts only with a new handshake version.
    CHECK(fingerprint_of(base).digest == fingerprint_of(base).digest);
    CHECK(fingerprint_of(base).digest == "2ff467aa-61ba-577c-803c-e792de53969a");
}

TEST_CASE("host-side settings are not part of the fingerprint") {
    const auto digest = fingerprint_of(base).digest;
    auto with = [](std::string from, std::string to) {
        std::string s = base;
        s.replace(s.find(from), from.size(), to);
        return s;
    };
    CHECK(fingerprint_of(with("path: data.img", "path: /elsewhere/other.img")).digest == digest);
    CHECK(fingerprint_of(base + "iothreads: 2\n").digest == digest);
    CHECK(fingerprint_of(with("memory: {size: 512Mi}", "memory: {size: 512Mi, hugepages: 2Mi}"))
              .digest == digest);
    CHECK(fingerprint_of(with("cpu: {cores: 2}", "cpu: {cores: 2, pinning: {vcpus: [4, 5]}}"))
              .digest == digest);
    CHECK(fingerprint_of(base + "security: {seccomp: log}\n").digest == digest);
}

TEST_CASE("a guest-visible change differs, and compare() names it from each side") {
    auto here = fingerprint_of(base);
    auto moved = base;
    moved.replace(moved.find("format: qcow2}"), 14, "format: qcow2, pciAddress: '0000:03:00.0'}");
    auto there = fingerprint_of(moved);
    CHECK(here.digest != there.digest);
    auto d = topology::compare(here, there);
    REQUIRE(d.size() >= 1);
    CHECK(d[0] == "disks[data]: 0000:02:00.0 here, 0000:03:00.0 there");
    auto back = topology::compare(there, here);
    CHECK(back[0] == "disks[data]: 0000:03:00.0 here, 0000:02:00.0 there");
    CHECK(topology::compare(here, here).empty());
}

TEST_CASE("a device on one side only is absent on the other") {
    auto here = fingerprint_of(base);
    auto fewer = fingerprint_of(R"(name: fp
cpu: {cores: 2}
memory: {size: 512Mi}
disks: [{name: root, path: root.img, format: raw}]
interfaces: [{name: n1, backend: {type: user}}]
)");
    auto d = topology::compare(here, fewer);
    CHECK(std::find(d.begin(), d.end(), "disks[data]: 0000:02:00.0 here, absent there") != d.end());
    auto r = topology::compare(fewer, here);
    CHECK(std::find(r.begin(), r.end(), "disks[data]: absent here, 0000:02:00.0 there") != r.end());
}

TEST_CASE("CPU, memory and MAC changes are named") {
    auto here = fingerprint_of(base);
    auto bigger = base;
    bigger.replace(bigger.find("512Mi"), 5, "1Gi");
    auto d = topology::compare(here, fingerprint_of(bigger));
    REQUIRE(d.size() == 1);
    CHECK(d[0] == "memory.size: 536870912 here, 1073741824 there");
    auto mac = base;
    mac.replace(mac.find("{name: n1,"), 10, "{name: n1, mac: '52:54:00:00:00:01',");
    d = topology::compare(here, fingerprint_of(mac));
    REQUIRE(d.size() == 1);
    CHECK(d[0].rfind("interfaces[n1].mac: ", 0) == 0);
}
