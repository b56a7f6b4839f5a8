// plan_placement(): dedicated CPUs, emulator isolation, SMT siblings, NUMA nodes and hand-made
// pinning, on fake sysfs and cgroup v2 trees of machines larger than the test machine.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <qshim/placement.hpp>

#include "fake_root.hpp"
#include "spec_test_util.hpp"

using namespace qshim;
using Catch::Contains;
using cgroups::CpuSet;
using qshim::test::FakeRoot;
using qshim::test::must_parse;

namespace {

// Two sockets (= NUMA nodes), four cores each, two threads per core, numbered as Linux does on
// most x86 servers: CPUs 0-7 are the first thread of every core (0-3 socket 0, 4-7 socket 1),
// and CPU n+8 is the SMT sibling of CPU n.
void two_socket_smt(const FakeRoot& fake) {
    const std::string sys = "/sys/devices/system";
    for (unsigned cpu = 0; cpu < 16; ++cpu) {
        const unsigned first = cpu % 8;
        const std::string dir = fmt::format("{}/cpu/cpu{}/topology", sys, cpu);
        fake.write(dir + "/physical_package_id", std::to_string(first / 4));
        fake.write(dir + "/core_id", std::to_string(first % 4));
        fake.write(dir + "/thread_siblings_list", fmt::format("{},{}", first, first + 8));
    }
    fake.write(sys + "/cpu/online", "0-15");
    fake.write(sys + "/node/online", "0-1");
    fake.write(sys + "/node/node0/cpulist", "0-3,8-11");
    fake.write(sys + "/node/node1/cpulist", "4-7,12-15");
    fake.write(sys + "/node/node0/meminfo", "Node 0 MemTotal:       33554432 kB");
    fake.write(sys + "/node/node1/meminfo", "Node 1 MemTotal:       33554432 kB");
}

// A Kubernetes container on cgroup v2 whose cpuset the static CPU manager set.
void pod_cgroup(const FakeRoot& fake, const std::string& cpus, const std::string& mems = "0-1") {
    fake.write("/proc/self/mountinfo",
               "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    fake.write("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
    fake.write("/sys/fs/cgroup/cpuset.cpus.effective", "0-15");
    fake.write("/sys/fs/cgroup/cpuset.mems.effective", "0-1");
    fake.write("/sys/fs/cgroup/kubepods/pod1/ctr/cpuset.cpus.effective", cpus);
    fake.write("/sys/fs/cgroup/kubepods/pod1/ctr/cpuset.mems.effective", mems);
}

Result<launcher::Placement> place(const std::string& spec_text, const std::string& cpus,
                                  const std::string& mems = "0-1") {
    FakeRoot fake;
    two_socket_smt(fake);
    pod_cgroup(fake, cpus, mems);
    auto limits = cgroups::discover(fake.roots());
    REQUIRE(limits.ok());
    auto host = cgroups::read_host_topology(fake.roots());
    REQUIRE(host.ok());
    return launcher::plan_placement(must_parse(spec_text), *limits, *host);
}

std::string message(const Result<launcher::Placement>& r) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_spec);
    return r.error().message;
}

}  // namespace

TEST_CASE("a spec that pins nothing has no placement", "[placement]") {
    auto p = place("name: vm\ncpu: {cores: 4}\n", "0-15");
    REQUIRE(p.ok());
    CHECK_FALSE(p->pinned());
    CHECK(p->emulator.empty());
    CHECK(p->numa.empty());
}

TEST_CASE("dedicated: vCPUs fill whole cores, in node and core order", "[placement]") {
    auto p = place("name: vm\ncpu: {cores: 4, dedicated: true}\n", "0-15");
    REQUIRE(p.ok());
    // Core 0 of socket 0 is CPUs 0 and 8, core 1 is 1 and 9.
    CHECK(p->vcpus == std::vector<unsigned>{0, 8, 1, 9});
    // Without isolation QEMU's other threads share the vCPUs' CPUs, as in KubeVirt.
    CHECK(p->emulator == CpuSet{0, 1, 8, 9});
    CHECK(p->iothreads == p->emulator);
    CHECK(p->cpuset == CpuSet{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});
}

TEST_CASE("guest threads of one core land on SMT siblings of one host core", "[placement]") {
    auto p = place("name: vm\ncpu: {cores: 2, threads: 2, dedicated: true}\n", "1-3,9-11");
    REQUIRE(p.ok());
    CHECK(p->vcpus == std::vector<unsigned>{1, 9, 2, 10});
    // A cpuset with no two siblings of one core cannot hold a guest core of two threads.
    auto bad = place("name: vm\ncpu: {cores: 2, threads: 2, dedicated: true}\n", "0-7");
    CHECK_THAT(message(bad), Contains("cpu.threads") && Contains("SMT siblings") &&
                                 Contains("0-7") && Contains("holds 0 host cores"));
}

TEST_CASE("isolateEmulatorThread: one more CPU, on a core no vCPU uses", "[placement]") {
    auto p = place("name: vm\ncpu: {cores: 2, dedicated: true, isolateEmulatorThread: true}\n",
                   "2-4,10-12");
    REQUIRE(p.ok());
    CHECK(p->vcpus == std::vector<unsigned>{2, 10});
    CHECK(p->emulator == CpuSet{3});
    CHECK(p->iothreads == CpuSet{3});
    // When every core holds a vCPU, the emulator shares the last core with one.
    auto tight = place("name: vm\ncpu: {cores: 3, dedicated: true, isolateEmulatorThread: true}\n",
                       "2-3,10-11");
    REQUIRE(tight.ok());
    CHECK(tight->vcpus == std::vector<unsigned>{2, 10, 11});
    CHECK(tight->emulator == CpuSet{3});
    // Whole cores plus one CPU of another (what the kubelet hands out for an odd count): the
    // vCPUs keep the whole core, the emulator takes the partial one.
    auto partial = place(
        "name: vm\ncpu: {cores: 2, dedicated: true, isolateEmulatorThread: true}\n", "2,3,11");
    REQUIRE(partial.ok());
    CHECK(partial->vcpus == std::vector<unsigned>{3, 11});
    CHECK(partial->emulator == CpuSet{2});
}

TEST_CASE("more vCPUs than the cpuset holds starts nothing, and says why", "[placement]") {
    auto r =
        place("name: vm\ncpu: {cores: 2, dedicated: true, isolateEmulatorThread: true}\n", "4,12");
    CHECK_THAT(message(r),
               Contains("cpu.dedicated") &&
                   Contains("needs 3 host CPUs (2 vCPUs + 1 for the emulator thread)") &&
                   Contains("cpuset 4,12") && Contains("has 2"));
    CHECK_THAT(r.error().message, Catch::StartsWith("cpu.dedicated: "));
}

TEST_CASE("numa auto: one guest node per host node of the vCPUs, memory split by vCPUs",
          "[placement][numa]") {
    // Two cores on each socket: vCPUs 0-3 on node 0, 4-7 on node 1.
    auto p = place(
        "name: vm\ncpu: {sockets: 2, cores: 4, dedicated: true}\nmemory: {size: 4Gi}\n"
        "numa: {guestNodes: auto}\n",
        "2-5,10-13");
    REQUIRE(p.ok());
    CHECK(p->vcpus == std::vector<unsigned>{2, 10, 3, 11, 4, 12, 5, 13});
    REQUIRE(p->numa.size() == 2);
    CHECK(p->numa[0].vcpus == CpuSet{0, 1, 2, 3});
    CHECK(p->numa[1].vcpus == CpuSet{4, 5, 6, 7});
    CHECK(p->numa[0].memory_bytes == 2ull << 30);
    CHECK(p->numa[1].memory_bytes == 2ull << 30);
    CHECK(p->numa[0].host_nodes == CpuSet{0});
    CHECK(p->numa[1].host_nodes == CpuSet{1});
    // Uneven: 2 vCPUs on node 0, 1 on node 1; whole 2 MiB pages, the rest on the last node.
    auto uneven = place(
        "name: vm\ncpu: {sockets: 3, dedicated: true}\nmemory: {size: 1Gi}\n"
        "numa: {guestNodes: auto}\n",
        "3,11,4");
    REQUIRE(uneven.ok());
    REQUIRE(uneven->numa.size() == 2);
    CHECK(uneven->numa[0].memory_bytes == 682ull << 20);
    CHECK(uneven->numa[1].memory_bytes == 342ull << 20);
    CHECK(uneven->numa[0].memory_text == "682Mi");
    // The resolved spec carries the nodes, so QEMU's command line (and a migration target) has
    // them explicitly.
    spec::VmSpec resolved = launcher::resolve_numa(
        must_parse("name: vm\ncpu: {sockets: 3, dedicated: true}\nmemory: {size: 1Gi}\n"
                   "numa: {guestNodes: auto}\n"),
        *uneven);
    CHECK_FALSE(resolved.numa.automatic);
    CHECK(resolved.numa.nodes.size() == 2);
}

TEST_CASE("numa auto never splits a guest socket over host nodes", "[placement][numa]") {
    // One socket of 3 cores on CPUs of two nodes: the guest would share a cache across nodes.
    auto r = place(
        "name: vm\ncpu: {cores: 3, dedicated: true}\nmemory: {size: 1Gi}\n"
        "numa: {guestNodes: auto}\n",
        "3,11,4");
    CHECK_THAT(message(r), Contains("guest socket 0 landed on host nodes 0-1") &&
                               Contains("one socket per host node"));
}

TEST_CASE("vCPUs stay in one node when it can hold them all", "[placement][numa]") {
    // Node 0 has one CPU in the cpuset, node 1 four: a 2-vCPU VM goes wholly on node 1.
    auto p = place("name: vm\ncpu: {cores: 2, dedicated: true}\n", "3,4-5,12-13");
    REQUIRE(p.ok());
    CHECK(p->vcpus == std::vector<unsigned>{4, 12});
}

TEST_CASE("cores are the kernel's sibling sets, whatever core_id says", "[placement]") {
    // Two dies in one package, each numbering its cores from 0: CPUs 0/4 and 2/6 both say
    // core 0, but they are different cores (their sibling lists say so).
    FakeRoot fake;
    const std::string sys = "/sys/devices/system";
    for (unsigned cpu = 0; cpu < 8; ++cpu) {
        const std::string dir = fmt::format("{}/cpu/cpu{}/topology", sys, cpu);
        fake.write(dir + "/physical_package_id", "0");
        fake.write(dir + "/core_id", std::to_string((cpu % 4) % 2));
        fake.write(dir + "/thread_siblings_list", fmt::format("{},{}", cpu % 4, cpu % 4 + 4));
    }
    fake.write(sys + "/cpu/online", "0-7");
    fake.write("/proc/meminfo", "MemTotal:        8000000 kB");
    pod_cgroup(fake, "0-7", "0");
    auto limits = cgroups::discover(fake.roots());
    auto host = cgroups::read_host_topology(fake.roots());
    REQUIRE((limits.ok() && host.ok()));
    auto p = launcher::plan_placement(
        must_parse("name: vm\ncpu: {cores: 2, threads: 2, dedicated: true}\n"), *limits, *host);
    REQUIRE(p.ok());
    CHECK(p->vcpus == std::vector<unsigned>{0, 4, 1, 5});
}

TEST_CASE("hand pinning on an offline CPU is refused", "[placement]") {
    FakeRoot fake;
    two_socket_smt(fake);
    fake.write("/sys/devices/system/cpu/online", "0-6");
    pod_cgroup(fake, "0-15");
    auto limits = cgroups::discover(fake.roots());
    auto host = cgroups::read_host_topology(fake.roots());
    REQUIRE((limits.ok() && host.ok()));
    auto r = launcher::plan_placement(
        must_parse("name: vm\ncpu: {cores: 2, pinning: {vcpus: [6, 7]}}\n"), *limits, *host);
    CHECK_THAT(message(r), Contains("cpu.pinning.vcpus[1]: host CPU 7 is offline"));
}

TEST_CASE("a single-node host gives one guest node", "[placement][numa]") {
    auto p = place(
        "name: vm\ncpu: {cores: 2, dedicated: true}\nmemory: {size: 512Mi}\n"
        "numa: {guestNodes: auto}\n",
        "0,8");
    REQUIRE(p.ok());
    REQUIRE(p->numa.size() == 1);
    CHECK(p->numa[0].vcpus == CpuSet{0, 1});
    CHECK(p->numa[0].memory_bytes == 512ull << 20);
}

TEST_CASE("pinning by hand is checked against the cpuset", "[placement]") {
    auto p = place(
        "name: vm\ncpu: {cores: 2, pinning: {vcpus: [4, 5], emulator: '6'}}\n"
        "iothreads: 1\n",
        "4-7");
    REQUIRE(p.ok());
    CHECK(p->vcpus == std::vector<unsigned>{4, 5});
    CHECK(p->emulator == CpuSet{6});
    CHECK(p->iothreads == CpuSet{6});
    auto outside = place("name: vm\ncpu: {cores: 2, pinning: {vcpus: [4, 9]}}\n", "4-7");
    CHECK_THAT(message(outside), Contains("cpu.pinning.vcpus[1]") &&
                                     Contains("host CPU 9 is outside") && Contains("4-7"));
    auto emulator =
        place("name: vm\ncpu: {cores: 2, pinning: {vcpus: [4, 5], emulator: 0-1}}\n", "4-7");
    CHECK_THAT(message(emulator), Contains("cpu.pinning.emulator") && Contains("0-1"));
}

TEST_CASE("guest memory bound to host nodes outside cpuset.mems is refused", "[placement][numa]") {
    auto r = place(
        "name: vm\ncpu: {cores: 2}\nmemory: {size: 512Mi}\n"
        "numa:\n  guestNodes:\n"
        "    - {vcpus: 0, memory: 256Mi, hostNodes: 0}\n"
        "    - {vcpus: 1, memory: 256Mi, hostNodes: 1}\n",
        "0-15", "0");
    CHECK_THAT(message(r), Contains("numa.guestNodes[1].hostNodes") &&
                               Contains("host nodes 1 are outside qshim's memory nodes 0"));
}

TEST_CASE("a CPU that is offline is never given out", "[placement]") {
    FakeRoot fake;
    two_socket_smt(fake);
    fake.write("/sys/devices/system/cpu/online", "0-7,9-15");  // CPU 8 offline
    pod_cgroup(fake, "0-1,8-9");
    auto limits = cgroups::discover(fake.roots());
    auto host = cgroups::read_host_topology(fake.roots());
    REQUIRE((limits.ok() && host.ok()));
    auto p = launcher::plan_placement(must_parse("name: vm\ncpu: {cores: 3, dedicated: true}\n"),
                                      *limits, *host);
    REQUIRE(p.ok());
    CHECK(p->vcpus == std::vector<unsigned>{0, 1, 9});
}
