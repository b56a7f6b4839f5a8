// cgroups: qshim's cgroup limits (v1, v2, hybrid) and the host topology, read from fake trees.
#include <fmt/format.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <qshim/cgroups.hpp>
#include <string>

#include "fake_root.hpp"

using namespace qshim;
using namespace qshim::cgroups;
using Catch::Contains;
namespace fs = std::filesystem;
using qshim::test::FakeRoot;

namespace {

// mountinfo lines for the cgroup v1 hierarchies of this project's CI machines (hybrid layout).
const char* v1_mountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n";
const char* v1_cgroup =
    "9:name=systemd:/\n8:pids:/vm\n4:memory:/pods/vm\n3:cpuset:/vm\n1:cpu,cpuacct:/pods/vm\n"
    "0::/\n";

void v1_tree(const FakeRoot& fake) {
    fake.write("/proc/self/cgroup", v1_cgroup);
    fake.write("/sys/fs/cgroup/cpuset/cpuset.effective_cpus", "0-7");
    fake.write("/sys/fs/cgroup/cpuset/cpuset.effective_mems", "0-1");
    fake.write("/sys/fs/cgroup/cpuset/vm/cpuset.effective_cpus", "2-3,6");
    fake.write("/sys/fs/cgroup/cpuset/vm/cpuset.effective_mems", "1");
    fake.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712");
    fake.write("/sys/fs/cgroup/memory/pods/memory.limit_in_bytes", "536870912");
    fake.write("/sys/fs/cgroup/memory/pods/vm/memory.limit_in_bytes", "1073741824");
    fake.write("/sys/fs/cgroup/cpu,cpuacct/pods/vm/cpu.cfs_quota_us", "150000");
    fake.write("/sys/fs/cgroup/cpu,cpuacct/pods/vm/cpu.cfs_period_us", "100000");
    fake.write("/sys/fs/cgroup/cpu,cpuacct/pods/cpu.cfs_quota_us", "-1");
    fake.write("/sys/fs/cgroup/pids/vm/pids.max", "max");
    fake.write("/sys/fs/cgroup/pids/pids.max", "max");
}

}  // namespace

TEST_CASE("CPU lists in the kernel's syntax", "[cgroups]") {
    CHECK(parse_cpu_list("0-3,8,10-11\n") == CpuSet{0, 1, 2, 3, 8, 10, 11});
    CHECK(parse_cpu_list("5") == CpuSet{5});
    CHECK(parse_cpu_list("") == CpuSet{});
    for (const char* bad : {"3-1", "a", "1,,2", "-1", "1-", "0-70000", "1 2"}) {
        INFO(bad);
        CHECK_FALSE(parse_cpu_list(bad).has_value());
    }
    CHECK(to_cpu_list({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11");
    CHECK(to_cpu_list({}) == "");
    CHECK(to_cpu_list({7}) == "7");
}

TEST_CASE("cgroup v1: each controller on its hierarchy, limits the lowest on the way up",
          "[cgroups]") {
    FakeRoot fake;
    v1_tree(fake);
    fake.write("/proc/self/mountinfo", v1_mountinfo);
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK(limits->mode == Mode::v1);
    CHECK(limits->cpus == CpuSet{2, 3, 6});
    CHECK(limits->mems == CpuSet{1});
    CHECK(limits->cpuset_dir == (fake.path / "sys/fs/cgroup/cpuset/vm").string());
    CHECK(limits->memory_bytes == 536870912u);  // the parent's limit is the lower one
    REQUIRE(limits->cpu_quota.has_value());
    CHECK(limits->cpu_quota->quota_us == 150000u);
    CHECK(limits->cpu_quota->period_us == 100000u);
    CHECK_FALSE(limits->pids_max.has_value());
}

TEST_CASE("hybrid: v1 controllers plus an empty cgroup2 mount", "[cgroups]") {
    FakeRoot fake;
    v1_tree(fake);
    fake.write("/proc/self/mountinfo",
               std::string(v1_mountinfo) +
                   "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK(limits->mode == Mode::hybrid);
    CHECK(limits->cpus == CpuSet{2, 3, 6});
    CHECK(limits->memory_bytes == 536870912u);
}

TEST_CASE("cgroup v2: a pod's container, limits from the pod above it", "[cgroups]") {
    FakeRoot fake;
    fake.write("/proc/self/mountinfo",
               "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    fake.write("/proc/self/cgroup", "0::/kubepods/burstable/pod1/ctr\n");
    const std::string pod = "/sys/fs/cgroup/kubepods/burstable/pod1";
    fake.write("/sys/fs/cgroup/cpuset.cpus.effective", "0-15");
    fake.write("/sys/fs/cgroup/cpuset.mems.effective", "0-1");
    fake.write(pod + "/ctr/cpuset.cpus.effective", "4-5");
    fake.write(pod + "/ctr/cpuset.mems.effective", "0");
    fake.write(pod + "/ctr/memory.max", "max");
    fake.write(pod + "/memory.max", "1073741824");
    fake.write("/sys/fs/cgroup/kubepods/memory.max", "max");
    fake.write(pod + "/ctr/cpu.max", "max 100000");
    fake.write(pod + "/cpu.max", "200000 100000");
    fake.write(pod + "/ctr/pids.max", "4096");
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK(limits->mode == Mode::v2);
    CHECK(limits->cpus == CpuSet{4, 5});
    CHECK(limits->mems == CpuSet{0});
    CHECK(limits->memory_bytes == 1073741824u);
    REQUIRE(limits->cpu_quota.has_value());
    CHECK(limits->cpu_quota->quota_us == 200000u);
    CHECK(limits->pids_max == 4096u);
    CHECK(limits->notes.empty());
}

TEST_CASE("cgroup v2: a cpuset not enabled below is the nearest ancestor's", "[cgroups]") {
    FakeRoot fake;
    fake.write("/proc/self/mountinfo", "25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
    fake.write("/proc/self/cgroup", "0::/a/b\n");
    fake.write("/sys/fs/cgroup/a/cpuset.cpus.effective", "4-7");
    fake.write("/sys/fs/cgroup/a/cpuset.mems.effective", "1");
    fake.write("/sys/fs/cgroup/a/b/memory.max", "max");
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK(limits->cpus == CpuSet{4, 5, 6, 7});
    CHECK(limits->cpuset_dir == (fake.path / "sys/fs/cgroup/a").string());
    CHECK_FALSE(limits->memory_bytes.has_value());
}

TEST_CASE("a container's own cgroup mounted at the mount point (no cgroup namespace)",
          "[cgroups]") {
    FakeRoot fake;
    // The mount shows /kubepods/pod1/ctr at /sys/fs/cgroup: its ancestors are out of reach.
    fake.write("/proc/self/mountinfo",
               "25 20 0:22 /kubepods/pod1/ctr /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n");
    fake.write("/proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
    fake.write("/sys/fs/cgroup/cpuset.cpus.effective", "1");
    fake.write("/sys/fs/cgroup/cpuset.mems.effective", "0");
    fake.write("/sys/fs/cgroup/memory.max", "268435456");
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK(limits->cpus == CpuSet{1});
    CHECK(limits->memory_bytes == 268435456u);
    CHECK(limits->memory_dir == (fake.path / "sys/fs/cgroup").string());

    // A path with an escaped space in the mount point.
    FakeRoot spaced;
    spaced.write("/proc/self/mountinfo", "25 20 0:22 / /cg\\040two rw - cgroup2 cgroup2 rw\n");
    spaced.write("/proc/self/cgroup", "0::/\n");
    spaced.write("/cg two/cpuset.cpus.effective", "0-1");
    auto two = discover(spaced.roots());
    REQUIRE(two.ok());
    CHECK(two->cpus == CpuSet{0, 1});
}

TEST_CASE("missing controllers: the host's CPUs, and a note saying so", "[cgroups]") {
    FakeRoot fake;
    fake.write("/proc/self/mountinfo",
               "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
    fake.write("/proc/self/cgroup", "4:memory:/\n");
    fake.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712");
    fake.write("/sys/devices/system/cpu/online", "0-3");
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK(limits->mode == Mode::v1);
    CHECK(limits->cpus == CpuSet{0, 1, 2, 3});
    CHECK(limits->mems == CpuSet{0});  // no node folder: a machine without NUMA
    CHECK_FALSE(limits->memory_bytes.has_value());
    CHECK_FALSE(limits->cpu_quota.has_value());
    CHECK_THAT(fmt::format("{}", fmt::join(limits->notes, "; ")),
               Contains("no cpuset controller is mounted") && Contains("no pids controller") &&
                   Contains("all online CPUs 0-3"));

    FakeRoot bare;
    bare.write("/proc/self/mountinfo", "23 1 0:21 / / rw - ext4 /dev/vda1 rw\n");
    bare.write("/proc/self/cgroup", "");
    bare.write("/sys/devices/system/cpu/online", "0");
    auto none = discover(bare.roots());
    REQUIRE(none.ok());
    CHECK_THAT(none->notes.front(), Contains("no cgroup filesystem is mounted"));
}

TEST_CASE("unreadable and malformed files are errors naming the file", "[cgroups]") {
    FakeRoot fake;
    fake.write("/proc/self/mountinfo", "25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
    fake.write("/proc/self/cgroup", "0::/vm\n");
    fake.write("/sys/fs/cgroup/vm/cpuset.cpus.effective", "0");
    // A folder where the file should be: read() fails with EISDIR, as root cannot be kept out.
    fs::create_directories(fake.path / "sys/fs/cgroup/vm/memory.max");
    auto unreadable = discover(fake.roots());
    REQUIRE_FALSE(unreadable.ok());
    CHECK(unreadable.error().code == Errc::io);
    CHECK_THAT(unreadable.error().what(),
               Contains("reading qshim's cgroup: " +
                        (fake.path / "sys/fs/cgroup/vm/memory.max").string() + ": Is a directory"));

    fs::remove(fake.path / "sys/fs/cgroup/vm/memory.max");
    fake.write("/sys/fs/cgroup/vm/pids.max", "lots");
    auto garbage = discover(fake.roots());
    REQUIRE_FALSE(garbage.ok());
    CHECK_THAT(garbage.error().what(), Contains("pids.max: not a number or 'max': 'lots'"));

    fake.write("/sys/fs/cgroup/vm/pids.max", "max");
    fake.write("/sys/fs/cgroup/vm/cpuset.cpus.effective", "0-x");
    auto list = discover(fake.roots());
    REQUIRE_FALSE(list.ok());
    CHECK_THAT(list.error().what(), Contains("cpuset.cpus.effective: not a CPU list: '0-x'"));

    FakeRoot empty;
    auto nothing = discover(empty.roots());
    REQUIRE_FALSE(nothing.ok());
    CHECK_THAT(nothing.error().what(), Contains("/proc/self/mountinfo: No such file or directory"));
}

TEST_CASE("host topology: a 2-socket SMT machine with one CPU offline", "[cgroups][host]") {
    FakeRoot fake;
    const std::string sys = "/sys/devices/system";
    // Sockets 0 and 1, two cores each, two threads per core: CPUs 0-3 on node 0, 4-7 on node 1.
    for (unsigned cpu = 0; cpu < 8; ++cpu) {
        const std::string dir = fmt::format("{}/cpu/cpu{}/topology", sys, cpu);
        fake.write(dir + "/physical_package_id", std::to_string(cpu / 4));
        fake.write(dir + "/core_id", std::to_string((cpu / 2) % 2));
        unsigned first = cpu & ~1u;
        fake.write(dir + "/thread_siblings_list", fmt::format("{}-{}", first, first + 1));
    }
    fake.write(sys + "/cpu/online", "0-6");  // CPU 7 offline
    fake.write(sys + "/node/online", "0-1");
    fake.write(sys + "/node/node0/cpulist", "0-3");
    fake.write(sys + "/node/node1/cpulist", "4-7");
    fake.write(sys + "/node/node0/meminfo",
               "Node 0 MemTotal:       16384000 kB\nNode 0 MemFree: 1 kB");
    fake.write(sys + "/node/node1/meminfo", "Node 1 MemTotal:        8192000 kB");
    auto host = read_host_topology(fake.roots());
    REQUIRE(host.ok());
    REQUIRE(host->cpus.size() == 7);
    REQUIRE(host->nodes.size() == 2);
    CHECK(host->nodes[0].cpus == CpuSet{0, 1, 2, 3});
    CHECK(host->nodes[1].cpus == CpuSet{4, 5, 6});  // online ones only
    CHECK(host->nodes[0].memory_bytes == 16384000ull * 1024);
    CHECK(host->nodes[1].memory_bytes == 8192000ull * 1024);
    const HostCpu* five = host->cpu(5);
    REQUIRE(five);
    CHECK(five->package == 1);
    CHECK(five->core == 0);
    CHECK(five->node == 1);
    CHECK(five->siblings == CpuSet{4, 5});
    CHECK(host->cpu(7) == nullptr);
}

TEST_CASE("host topology: no NUMA folder is one node with all memory", "[cgroups][host]") {
    FakeRoot fake;
    fake.write("/sys/devices/system/cpu/online", "0-1");
    fake.write("/proc/meminfo", "MemTotal:       2048000 kB\nMemFree: 10 kB");
    auto host = read_host_topology(fake.roots());
    REQUIRE(host.ok());
    REQUIRE(host->nodes.size() == 1);
    CHECK(host->nodes[0].cpus == CpuSet{0, 1});
    CHECK(host->nodes[0].memory_bytes == 2048000ull * 1024);
    CHECK(host->cpus[1].siblings == CpuSet{1});  // no topology files: each CPU its own core

    FakeRoot broken;
    broken.write("/sys/devices/system/cpu/online", "0");
    broken.write("/sys/devices/system/cpu/cpu0/topology/core_id", "zero");
    auto bad = read_host_topology(broken.roots());
    REQUIRE_FALSE(bad.ok());
    CHECK_THAT(bad.error().what(), Contains("core_id: not a number: 'zero'"));
}

TEST_CASE("this machine: discover() and read_host_topology() agree with the kernel",
          "[cgroups][host]") {
    auto limits = discover();
    REQUIRE(limits.ok());
    auto host = read_host_topology();
    REQUIRE(host.ok());
    // The cpuset is a subset of the online CPUs, and qshim may run on every CPU it names.
    cpu_set_t mine;
    CPU_ZERO(&mine);
    REQUIRE(sched_getaffinity(0, sizeof mine, &mine) == 0);
    for (unsigned cpu : limits->cpus) {
        INFO(cpu);
        CHECK(host->cpu(cpu) != nullptr);
    }
    for (const auto& c : host->cpus)
        if (CPU_ISSET(c.id, &mine)) CHECK(limits->cpus.count(c.id) == 1);
}

TEST_CASE("what cannot be reached is a note, never a silent 'no limit'", "[cgroups]") {
    // Another cgroup namespace's path ("/../x"), and a folder that is not there.
    FakeRoot fake;
    fake.write("/proc/self/mountinfo",
               "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
               "36 31 0:33 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
               "37 31 0:34 / broken rw - cgroup cgroup rw,cpu\n");  // not absolute: ignored
    fake.write("/proc/self/cgroup", "5:memory:/../elsewhere\n4:pids:/gone\n3:cpu:/\n");
    fake.write("/sys/fs/cgroup/pids/pids.max", "100");
    fake.write("/sys/devices/system/cpu/online", "0");
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK_FALSE(limits->memory_bytes.has_value());
    CHECK_FALSE(limits->pids_max.has_value());  // not the root's 100: our folder is missing
    CHECK(limits->memory_dir.empty());
    CHECK(limits->pids_dir.empty());
    const std::string notes = fmt::format("{}", fmt::join(limits->notes, "; "));
    CHECK_THAT(notes, Contains("memory: this process's cgroup /../elsewhere is outside what is "
                               "mounted"));
    CHECK_THAT(notes, Contains("pids: the cgroup folder /sys/fs/cgroup/pids/gone does not exist"));
    CHECK_THAT(notes, Contains("no cpu controller is mounted"));
}

TEST_CASE("cgroup v1's 'no limit' on 64 KiB pages is no limit too", "[cgroups]") {
    FakeRoot fake;
    fake.write("/proc/self/mountinfo",
               "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
    fake.write("/proc/self/cgroup", "4:memory:/\n");
    fake.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854710272");
    fake.write("/sys/devices/system/cpu/online", "0");
    auto limits = discover(fake.roots());
    REQUIRE(limits.ok());
    CHECK_FALSE(limits->memory_bytes.has_value());
}
