// plan_sandbox() and apply_sandbox(): QEMU's ids, rlimits, capabilities and seccomp program.
#include "launcher/sandbox.hpp"

#include <cap-ng.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <qshim/resources.hpp>

#include "launcher/seccomp_policy.hpp"

namespace qshim::launcher::detail {

HostCredentials current_credentials() {
    HostCredentials host;
    host.uid = geteuid();
    host.gid = getegid();
    // libcap-ng keeps its state per thread; this reads the calling thread's capabilities.
    if (capng_get_caps_process() == 0) {
        host.cap_setuid = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETUID) == 1;
        host.cap_setgid = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETGID) == 1;
        host.cap_setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) == 1;
        host.cap_sys_resource = capng_have_capability(CAPNG_EFFECTIVE, CAP_SYS_RESOURCE) == 1;
    }
    getrlimit(RLIMIT_NOFILE, &host.nofile);
    getrlimit(RLIMIT_MEMLOCK, &host.memlock);
    return host;
}

rlim_t nofile_needed(const spec::VmSpec& spec) {
    // 1024 is what QEMU is tested with; 64 per device (present or a spare hotplug port) covers
    // a multiqueue virtio device's eventfd pairs and its backend's files.
    rlim_t devices = spec.disks.size() + spec.interfaces.size() + spec.host_devices.size() +
                     spec.hotplug.disks + spec.hotplug.interfaces;
    return 1024 + 64 * devices;
}

Ids qemu_ids(const spec::VmSpec& spec, const HostCredentials& host) {
    if (spec.security.run_as) return {spec.security.run_as->uid, spec.security.run_as->gid};
    if (host.uid == 0) return {spec::RunAs{}.uid, spec::RunAs{}.gid};
    return {host.uid, host.gid};
}

namespace {

std::string limit_text(rlim_t v) { return v == RLIM_INFINITY ? "unlimited" : fmt::format("{}", v); }

// A limit QEMU needs at least `needed` of. Within qshim's hard limit: the soft limit rises to
// it. Past it: only with CAP_SYS_RESOURCE, else a clear refusal before anything starts.
Result<void> plan_limit(SandboxPlan& plan, const HostCredentials& host, int resource,
                        const char* name, const rlimit& current, rlim_t needed,
                        const std::string& why, const char* unit) {
    rlimit value = current;
    if (current.rlim_cur != RLIM_INFINITY && current.rlim_cur < needed) value.rlim_cur = needed;
    if (current.rlim_max != RLIM_INFINITY && current.rlim_max < needed) {
        if (!host.cap_sys_resource)
            return make_error(
                Errc::launch,
                fmt::format("{}: QEMU needs {} {} ({}), but qshim's hard limit is {} and raising "
                            "it needs CAP_SYS_RESOURCE; start qshim with a hard limit of at "
                            "least {} (ulimit -H, or the container's ulimits)",
                            name, needed, unit, why, limit_text(current.rlim_max), needed));
        value.rlim_max = needed;
    }
    plan.rlimits.push_back({resource, name, value});
    return {};
}

}  // namespace

Result<SandboxPlan> plan_sandbox(const spec::VmSpec& spec, const HostCredentials& host) {
    const std::string context = "planning the sandbox of VM " + spec.name;
    SandboxPlan plan;
    plan.ids = qemu_ids(spec, host);
    if (plan.ids.uid == 0 || plan.ids.gid == 0)
        return make_error(Errc::launch,
                          "QEMU would run as root: security.runAs must name an unprivileged uid "
                          "and gid",
                          context);
    plan.change_ids = plan.ids.uid != host.uid || plan.ids.gid != host.gid;
    plan.clear_bounding = host.cap_setpcap;
    if (plan.change_ids && !(host.cap_setuid && host.cap_setgid))
        return make_error(
            Errc::launch,
            fmt::format("security.runAs: QEMU should run as {}:{}, but qshim runs as {}:{} "
                        "without CAP_SETUID and CAP_SETGID; leave runAs unset to run QEMU as "
                        "qshim's own ids",
                        plan.ids.uid, plan.ids.gid, host.uid, host.gid),
            context);
    // A core dump would hold guest memory: never written.
    plan.rlimits.push_back({RLIMIT_CORE, "RLIMIT_CORE", {0, 0}});
    auto nofile = plan_limit(plan, host, RLIMIT_NOFILE, "RLIMIT_NOFILE", host.nofile,
                             nofile_needed(spec), "1024 + 64 per device and spare port", "files");
    if (!nofile) return make_error(Errc::launch, nofile.error().message, context);
    if (rlim_t memlock = launcher::memlock_needed(spec); memlock > 0) {
        auto locked = plan_limit(plan, host, RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", host.memlock,
                                 memlock, "hostDevices: guest RAM + 1 GiB pinned for VFIO DMA",
                                 "bytes of locked memory");
        if (!locked) return make_error(Errc::launch, locked.error().message, context);
    }
    auto program = build_seccomp_filter(spec.security.seccomp);
    if (!program) return std::move(program).error();
    plan.seccomp = std::move(*program);
    return plan;
}

SandboxPlan within_current_credentials(SandboxPlan plan, const HostCredentials& host) {
    if (!host.cap_setpcap) plan.clear_bounding = false;
    if (!host.cap_sys_resource)
        for (auto& l : plan.rlimits) {
            rlimit now{};
            if (getrlimit(l.resource, &now) != 0) continue;
            l.value.rlim_max = std::min(l.value.rlim_max, now.rlim_max);
            l.value.rlim_cur = std::min(l.value.rlim_cur, l.value.rlim_max);
        }
    return plan;
}

int apply_sandbox(const SandboxPlan& plan, pid_t parent) {
    // Limits first: raising one needs CAP_SYS_RESOURCE, which goes with the other capabilities.
    for (const auto& l : plan.rlimits)
        if (setrlimit(l.resource, &l.value) != 0) return errno;
    // Every capability goes: effective, permitted, inheritable, ambient, and the bounding set
    // when qshim holds CAP_SETPCAP (asking libcap-ng for it without fails the whole call). After
    // fork libcap-ng starts afresh; clearing ALL also empties the ambient set it would apply.
    // libcap-ng returns its own codes, not errno: a failure is reported as EPERM.
    capng_clear(CAPNG_SELECT_ALL);
    if (plan.change_ids) {
        // Groups cleared, gid then uid switched, capabilities applied (none) after the switch.
        int flags = CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_AMBIENT;
        if (plan.clear_bounding) flags |= CAPNG_CLEAR_BOUNDING;
        if (capng_change_id(static_cast<int>(plan.ids.uid), static_cast<int>(plan.ids.gid),
                            static_cast<capng_flags_t>(flags)) != 0)
            return EPERM;
    } else {
        auto sets = static_cast<capng_select_t>(CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT);
        if (capng_apply(plan.clear_bounding ? CAPNG_SELECT_ALL : sets) != 0) return EPERM;
    }
    // Say it to the kernel too, in case a libcap-ng without ambient support left some
    // (EINVAL: a kernel before 4.3, which has none).
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return errno;
    // Changing ids clears the parent-death signal: arm it again, and check the parent is
    // still there (it may have died in between, and then nobody would kill us).
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return errno;
    if (getppid() != parent) return ESRCH;
    // Nothing exec'd from here on gains privileges (setuid binaries, file capabilities), and
    // an unprivileged process may install a seccomp filter.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
    if (!plan.seccomp.empty()) {
        sock_fprog program{static_cast<unsigned short>(plan.seccomp.size()),
                           const_cast<sock_filter*>(plan.seccomp.data())};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) return errno;
    }
    return 0;
}

namespace {

// One write of `text` to a /proc file: the kernel takes a map in a single write.
int write_proc(const char* path, const char* text, size_t size) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ssize_t n = write(fd, text, size);
    int err = n == static_cast<ssize_t>(size) ? 0 : n < 0 ? errno : EIO;
    close(fd);
    return err;
}

}  // namespace

int enter_own_namespaces(const SandboxPlan& plan, pid_t parent) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return errno;
    // The id change made us undumpable, which gives /proc/self's files to root: this process
    // could not write its own maps. Dumpable again for that, and not a moment longer.
    if (prctl(PR_SET_DUMPABLE, 1) != 0) return errno;
    static constexpr char deny[] = "deny";
    if (int err = write_proc("/proc/self/setgroups", deny, sizeof deny - 1)) return err;
    if (int err = write_proc("/proc/self/uid_map", plan.uid_map.data(), plan.uid_map.size()))
        return err;
    if (int err = write_proc("/proc/self/gid_map", plan.gid_map.data(), plan.gid_map.size()))
        return err;
    if (prctl(PR_SET_DUMPABLE, 0) != 0) return errno;
    if (!plan.read_only_bind.empty()) {
        // The flags the folder's mount has are locked in a namespace we own: a remount must
        // repeat them, or the kernel refuses it (EPERM).
        const char* path = plan.read_only_bind.c_str();
        struct statvfs st {};
        if (statvfs(path, &st) != 0) return errno;
        unsigned long keep = 0;
        if (st.f_flag & ST_NOSUID) keep |= MS_NOSUID;
        if (st.f_flag & ST_NODEV) keep |= MS_NODEV;
        if (st.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
        if (st.f_flag & ST_NOATIME) keep |= MS_NOATIME;
        if (st.f_flag & ST_NODIRATIME) keep |= MS_NODIRATIME;
        if (st.f_flag & ST_RELATIME) keep |= MS_RELATIME;
        // Not recursive: a mount below the folder would stay writable, so it is not shared.
        if (mount(path, path, nullptr, MS_BIND, nullptr) != 0) return errno;
        if (mount(nullptr, path, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, nullptr) != 0)
            return errno;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return errno;
    if (getppid() != parent) return ESRCH;
    return 0;
}

SandboxPlan own_namespaces_plan(const SandboxPlan& plan, const std::string& read_only_bind) {
    SandboxPlan own = plan;
    own.seccomp.clear();
    own.uid_map = fmt::format("0 {} 1", plan.ids.uid);
    own.gid_map = fmt::format("0 {} 1", plan.ids.gid);
    own.read_only_bind = read_only_bind;
    // The kernel's default fs.nr_open: the most RLIMIT_NOFILE may be without privileges.
    constexpr rlim_t nr_open = 1u << 20;
    bool found = false;
    for (auto& l : own.rlimits)
        if (l.resource == RLIMIT_NOFILE) {
            found = true;
            l.value.rlim_cur = std::min(l.value.rlim_max, nr_open);
        }
    if (!found) {
        rlimit current{};
        getrlimit(RLIMIT_NOFILE, &current);
        own.rlimits.push_back({RLIMIT_NOFILE,
                               "RLIMIT_NOFILE",
                               {std::min(current.rlim_max, nr_open), current.rlim_max}});
    }
    return own;
}

}  // namespace qshim::launcher::detail
