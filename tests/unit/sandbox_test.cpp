// The sandbox plan: QEMU's ids, rlimits and seccomp program, decided before fork from the spec
// and what qshim holds (credentials built by hand here).
#include "launcher/sandbox.hpp"

#include <fmt/format.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <qshim/resources.hpp>
#include <qshim/spec.hpp>
#include <set>
#include <sstream>
#include <string>

#include "launcher/preflight.hpp"
#include "launcher/seccomp_policy.hpp"

using namespace qshim;
using namespace qshim::launcher::detail;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

spec::VmSpec vm(std::string_view extra = "") {
    auto s = spec::parse_spec("name: vm\nmemory: {size: 256Mi}\n" + std::string(extra), "vm.yaml");
    REQUIRE(s.ok());
    return *s;
}

HostCredentials root() {
    HostCredentials h;
    h.uid = h.gid = 0;
    h.cap_setuid = h.cap_setgid = true;
    h.nofile = {1024, 20000};
    h.memlock = {8 << 20, 8 << 20};
    return h;
}

HostCredentials pod_user() {
    HostCredentials h = root();
    h.uid = h.gid = 107;
    h.cap_setuid = h.cap_setgid = false;
    return h;
}

const RlimitSetting* limit(const SandboxPlan& plan, int resource) {
    for (const auto& l : plan.rlimits)
        if (l.resource == resource) return &l;
    return nullptr;
}

}  // namespace

TEST_CASE("root runs QEMU as 107:107, a non-root qshim as itself", "[sandbox]") {
    auto as_root = plan_sandbox(vm(), root());
    REQUIRE(as_root.ok());
    CHECK(as_root->ids.uid == 107);
    CHECK(as_root->ids.gid == 107);
    CHECK(as_root->change_ids);

    auto in_pod = plan_sandbox(vm(), pod_user());
    REQUIRE(in_pod.ok());
    CHECK(in_pod->ids.uid == 107);
    CHECK_FALSE(in_pod->change_ids);

    HostCredentials other = pod_user();
    other.uid = other.gid = 1000;
    auto own = plan_sandbox(vm(), other);
    REQUIRE(own.ok());
    CHECK(own->ids.uid == 1000);
    CHECK_FALSE(own->change_ids);

    auto chosen = plan_sandbox(vm("security: {runAs: {uid: 4242, gid: 4343}}\n"), root());
    REQUIRE(chosen.ok());
    CHECK(chosen->ids.uid == 4242);
    CHECK(chosen->ids.gid == 4343);
}

TEST_CASE("the bounding set is emptied only when qshim may (CAP_SETPCAP)", "[sandbox]") {
    HostCredentials with = root();
    with.cap_setpcap = true;
    auto as_root = plan_sandbox(vm(), with);
    REQUIRE(as_root.ok());
    CHECK(as_root->clear_bounding);
    // Asking libcap-ng to clear it without the capability fails the whole call: not asked.
    auto in_pod = plan_sandbox(vm(), pod_user());
    REQUIRE(in_pod.ok());
    CHECK_FALSE(in_pod->clear_bounding);
}

TEST_CASE("a plan made at launch, for a helper started after qshim gave up capabilities",
          "[sandbox]") {
    SandboxPlan plan;
    plan.clear_bounding = true;
    rlimit files{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &files) == 0);
    const rlim_t above = files.rlim_max == RLIM_INFINITY ? RLIM_INFINITY : files.rlim_max + 4096;
    plan.rlimits = {{RLIMIT_NOFILE, "RLIMIT_NOFILE", {above, above}},
                    {RLIMIT_CORE, "RLIMIT_CORE", {0, 0}}};
    HostCredentials locked;  // no CAP_SETPCAP, no CAP_SYS_RESOURCE any more
    auto later = within_current_credentials(plan, locked);
    CHECK_FALSE(later.clear_bounding);
    CHECK(later.rlimits[0].value.rlim_max == files.rlim_max);  // as far as qshim may still go
    CHECK(later.rlimits[0].value.rlim_cur == files.rlim_max);
    CHECK(later.rlimits[1].value.rlim_max == 0);  // lowering is always allowed
    HostCredentials privileged;
    privileged.cap_setpcap = privileged.cap_sys_resource = true;
    auto launch = within_current_credentials(plan, privileged);
    CHECK(launch.clear_bounding);
    CHECK(launch.rlimits[0].value.rlim_max == above);
}

TEST_CASE("a runAs qshim cannot switch to is refused before launch", "[sandbox]") {
    auto r = plan_sandbox(vm("security: {runAs: {uid: 4242, gid: 4242}}\n"), pod_user());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::launch);
    CHECK_THAT(r.error().message,
               Contains("QEMU should run as 4242:4242, but qshim runs as 107:107 without "
                        "CAP_SETUID and CAP_SETGID"));
    // A spec built in code can still say root; the plan refuses it too.
    auto s = vm();
    s.security.run_as = spec::RunAs{0, 0};
    auto as_root = plan_sandbox(s, root());
    REQUIRE_FALSE(as_root.ok());
    CHECK_THAT(as_root.error().message, Contains("QEMU would run as root"));
}

TEST_CASE("rlimits: no core dumps, files sized for the devices", "[sandbox]") {
    auto plan = plan_sandbox(vm(), root());
    REQUIRE(plan.ok());
    const auto* core = limit(*plan, RLIMIT_CORE);
    REQUIRE(core);
    CHECK(core->value.rlim_cur == 0);
    CHECK(core->value.rlim_max == 0);
    const auto* nofile = limit(*plan, RLIMIT_NOFILE);
    REQUIRE(nofile);
    // No devices, the default 8 + 4 spare hotplug ports: 1024 + 64 * 12.
    CHECK(nofile->value.rlim_cur == 1024 + 64 * 12);
    CHECK(nofile->value.rlim_max == 20000);          // the hard limit is left as it was
    CHECK(limit(*plan, RLIMIT_MEMLOCK) == nullptr);  // nothing needs locked memory

    HostCredentials low = root();
    low.nofile = {1024, 1024};
    auto refused = plan_sandbox(vm(), low);
    REQUIRE_FALSE(refused.ok());
    CHECK_THAT(refused.error().message,
               Contains("RLIMIT_NOFILE: QEMU needs 1792 files (1024 + 64 per device and spare "
                        "port), but qshim's hard limit is 1024 and raising it needs "
                        "CAP_SYS_RESOURCE"));
    low.cap_sys_resource = true;
    auto raised = plan_sandbox(vm(), low);
    REQUIRE(raised.ok());
    CHECK(limit(*raised, RLIMIT_NOFILE)->value.rlim_max == 1792);
}

TEST_CASE("RLIMIT_MEMLOCK holds guest RAM + 1 GiB with a VFIO device", "[sandbox]") {
    const auto spec = vm("hostDevices: [{name: gpu, hostAddress: '0000:3b:00.0'}]\n");
    const rlim_t needed = (256ull << 20) + (1ull << 30);
    CHECK(launcher::memlock_needed(spec) == needed);
    auto refused = plan_sandbox(spec, root());
    REQUIRE_FALSE(refused.ok());
    CHECK_THAT(
        refused.error().message,
        Contains(fmt::format("RLIMIT_MEMLOCK: QEMU needs {} bytes of locked memory", needed)));
    CHECK_THAT(refused.error().message, Contains("hard limit is 8388608"));
    HostCredentials enough = root();
    enough.memlock = {64 << 20, RLIM_INFINITY};
    auto plan = plan_sandbox(spec, enough);
    REQUIRE(plan.ok());
    const auto* memlock = limit(*plan, RLIMIT_MEMLOCK);
    REQUIRE(memlock);
    CHECK(memlock->value.rlim_cur == needed);
    CHECK(memlock->value.rlim_max == RLIM_INFINITY);
}

TEST_CASE("the deny-list: every entry resolves and says why", "[sandbox][seccomp]") {
    std::set<std::string_view> names;
    for (const auto& entry : denied_syscalls()) {
        INFO(entry.name);
        CHECK(names.insert(entry.name).second);  // no duplicates
        CHECK(entry.reason.size() > 10);
        CHECK(seccomp_syscall_resolve_name(std::string(entry.name).c_str()) != __NR_SCMP_ERROR);
    }
    // What the issue asked for by name, and what a QEMU escape needs first.
    for (const char* must : {"mount",
                             "umount2",
                             "pivot_root",
                             "chroot",
                             "ptrace",
                             "process_vm_readv",
                             "process_vm_writev",
                             "kexec_load",
                             "init_module",
                             "finit_module",
                             "delete_module",
                             "bpf",
                             "perf_event_open",
                             "keyctl",
                             "add_key",
                             "request_key",
                             "reboot",
                             "swapon",
                             "swapoff",
                             "setns",
                             "unshare",
                             "open_by_handle_at",
                             "userfaultfd"})
        CHECK(names.count(must) == 1);
    // Calls QEMU makes all the time must never be on it.
    for (const char* needed : {"read", "write", "ioctl", "mmap", "clone", "futex", "ppoll",
                               "io_uring_enter", "sched_setaffinity", "mbind", "memfd_create"})
        CHECK(names.count(needed) == 0);
}

TEST_CASE("the filter: one program per mode, none when off", "[sandbox][seccomp]") {
    for (auto mode :
         {spec::SeccompMode::enforce, spec::SeccompMode::kill, spec::SeccompMode::log}) {
        auto program = build_seccomp_filter(mode);
        REQUIRE(program.ok());
        CHECK(program->size() > denied_syscalls().size());  // a jump per call, plus the arch check
        CHECK(program->size() < BPF_MAXINSNS);
    }
    auto off = build_seccomp_filter(spec::SeccompMode::off);
    REQUIRE(off.ok());
    CHECK(off->empty());
    auto plan = plan_sandbox(vm("security: {seccomp: off}\n"), root());
    REQUIRE(plan.ok());
    CHECK(plan->seccomp.empty());
}

TEST_CASE("docs/security.md lists every entry of the deny-list", "[sandbox][seccomp][docs]") {
    std::ifstream file(std::string(QSHIM_SOURCE_ROOT) + "/docs/security.md");
    REQUIRE(file);
    std::stringstream text;
    text << file.rdbuf();
    for (const auto& entry : denied_syscalls()) {
        INFO(entry.name);
        CHECK_THAT(text.str(), Contains(fmt::format("| `{}` | {} |", entry.name, entry.reason)));
    }
}

TEST_CASE("preflight asks as QEMU's uid: /dev/kvm an error with kvm, a warning with auto",
          "[sandbox][preflight]") {
    // A stand-in for /dev/kvm that QEMU's uid cannot open: root's, mode 0600 (as on the CI
    // machines), checked as 107; or, run as non-root, mode 0 checked as ourselves.
    const bool root_user = geteuid() == 0;
    std::string dir = fs::temp_directory_path() / "qshim-preflight-XXXXXX";
    REQUIRE(mkdtemp(dir.data()));
    const std::string kvm = dir + "/kvm";
    std::ofstream(kvm) << "";
    chmod(dir.c_str(), 0755);
    chmod(kvm.c_str(), root_user ? 0600 : 0);
    PreflightInput input;
    input.qemu = {root_user ? Ids{107, 107} : Ids{geteuid(), getegid()}, root_user};
    input.kvm = kvm;

    std::vector<std::string> warnings;
    auto automatic = preflight(vm(), input, warnings);
    CHECK(automatic.ok());
    REQUIRE(warnings.size() == 1);
    CHECK_THAT(warnings[0],
               Contains("machine.accel auto: " + kvm + ": not readable and writable") &&
                   Contains("Permission denied; QEMU will use TCG"));

    warnings.clear();
    auto required = preflight(vm("machine: {accel: kvm}\n"), input, warnings);
    REQUIRE_FALSE(required.ok());
    CHECK_THAT(required.error().what(), Contains("machine.accel kvm: " + kvm));
    CHECK(warnings.empty());

    auto tcg = preflight(vm("machine: {accel: tcg}\n"), input, warnings);
    CHECK(tcg.ok());
    CHECK(warnings.empty());
    fs::remove_all(dir);
}
