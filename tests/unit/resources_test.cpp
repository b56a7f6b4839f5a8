// plan_resources(): the pod's CPUs, memory terms, huge pages and memlock, and their renderings.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <qshim/resources.hpp>

#include "spec_test_util.hpp"

using namespace qshim;
using Catch::Contains;
using qshim::test::must_parse;

namespace {

constexpr uint64_t MiB = 1ull << 20;

launcher::ResourcePlan plan(const std::string& yaml, std::optional<uint64_t> boot = 0) {
    auto spec = must_parse(yaml);
    auto topo = topology::plan(spec);
    REQUIRE(topo.ok());
    launcher::PlanInputs inputs;
    inputs.boot_files_bytes = boot;
    auto p = launcher::plan_resources(spec, *topo, inputs);
    REQUIRE(p.ok());
    return *p;
}

uint64_t term(const launcher::ResourcePlan& p, const std::string& name) {
    for (const auto& t : p.overhead)
        if (t.name == name) return t.bytes;
    return 0;
}

}  // namespace

TEST_CASE("memory is guest RAM plus every overhead term, each with its reason", "[plan]") {
    auto p = plan(
        "name: vm\ncpu: {cores: 2}\nmemory: {size: 1Gi}\nhotplug: {disks: 2, "
        "interfaces: 1}\niothreads: 1\n",
        15 * MiB + 1);
    CHECK(p.cpus == 2);
    CHECK_FALSE(p.dedicated);
    CHECK(p.guest_ram_bytes == 1024 * MiB);
    CHECK(term(p, "vcpus") == 20 * MiB);
    CHECK(term(p, "devices") == 2 * MiB);  // the RNG, the one device of a bare spec
    CHECK(term(p, "hotplug") == 6 * MiB);
    CHECK(term(p, "iothreads") == 2 * MiB);
    CHECK(term(p, "bootFiles") == 16 * MiB);  // rounded up to whole MiB
    CHECK(term(p, "pageTables") == 2 * MiB);
    CHECK(term(p, "tcg") == launcher::tcg_translation_cache_bytes);  // accel auto may be TCG
    uint64_t sum = 0;
    for (const auto& t : p.overhead) {
        CHECK_FALSE(t.why.empty());
        sum += t.bytes;
    }
    CHECK(p.overhead_bytes == sum);
    CHECK(p.memory_bytes == p.guest_ram_bytes + sum);
    CHECK(p.memlock_bytes == 0);
    // accel: kvm has no translation cache.
    CHECK(term(plan("name: vm\nmachine: {accel: kvm}\n"), "tcg") == 0);
}

TEST_CASE("dedicated CPUs, huge pages and VFIO in the plan and the k8s block", "[plan]") {
    auto p = plan(
        "name: vm\ncpu: {cores: 2, dedicated: true, isolateEmulatorThread: true}\n"
        "memory: {size: 2Gi, hugepages: 1Gi}\n"
        "hostDevices: [{name: gpu, hostAddress: '0000:3b:00.0'}]\n");
    CHECK(p.cpus == 3);
    CHECK(p.dedicated);
    CHECK(p.hugepage_size == 1024 * MiB);
    CHECK(p.hugepages_bytes == 2048 * MiB);
    CHECK(p.memory_bytes == p.overhead_bytes);  // guest RAM is in huge pages
    CHECK(term(p, "pageTables") == 0);
    CHECK(p.memlock_bytes == 3072 * MiB);  // guest RAM + 1 GiB for VFIO
    const std::string k8s = launcher::to_k8s(p);
    const std::string memory = std::to_string(p.memory_bytes / MiB) + "Mi";
    CHECK(k8s == "resources:\n  requests:\n    cpu: \"3\"\n    memory: " + memory +
                     "\n    hugepages-1Gi: 2Gi\n  limits:\n    cpu: \"3\"\n    memory: " + memory +
                     "\n    hugepages-1Gi: 2Gi\n");
    CHECK_THAT(launcher::to_text(p, must_parse("name: vm\n")),
               Contains("dedicated: requests = limits") && Contains("memlock: 3072 MiB"));
    CHECK_THAT(launcher::to_json(p), Contains("\"memlockBytes\": 3221225472"));
    // Without dedicated CPUs: a request, no CPU limit.
    CHECK(launcher::to_k8s(plan("name: vm\n")).find("limits:\n    memory:") != std::string::npos);
}

TEST_CASE("boot files are read from the spec's paths, or named when missing", "[plan]") {
    auto dir = std::filesystem::temp_directory_path() / "qshim-plan-test";
    std::filesystem::create_directories(dir);
    { std::ofstream(dir / "k") << std::string(3 * MiB, 'k'); }
    auto spec =
        must_parse("name: vm\nboot: {kernel: k, initrd: nope}\n", (dir / "vm.yaml").string());
    auto topo = topology::plan(spec);
    REQUIRE(topo.ok());
    auto missing = launcher::plan_resources(spec, *topo);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().code == Errc::io);
    CHECK_THAT(missing.error().message,
               Contains("boot.initrd") && Contains("nope") && Contains("--boot-size"));
    spec.boot.initrd.clear();
    auto read = launcher::plan_resources(spec, *topo);
    REQUIRE(read.ok());
    CHECK(term(*read, "bootFiles") == 3 * MiB);
    std::filesystem::remove_all(dir);
}
