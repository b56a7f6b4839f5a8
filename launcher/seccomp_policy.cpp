// The seccomp deny-list: what it holds and why, and its compilation to BPF with libseccomp.
#include "launcher/seccomp_policy.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "common/unique_fd.hpp"

namespace qshim::launcher::detail {

// A deny-list, not an allow-list: QEMU's own -sandbox is the allow-list-shaped layer, and an
// allow-list of ours would break with every QEMU or glibc update. These are calls whose only use
// to a process that emulates a machine is escaping it. QEMU 7.2 with the devices qshim plans calls
// none of them (the whole integration suite runs under this filter).
const std::vector<DeniedSyscall>& denied_syscalls() {
    static const std::vector<DeniedSyscall> table = {
        // The filesystem view: a compromised QEMU would remount or leave its root.
        {"mount", "changes the filesystem view; QEMU opens files, it never mounts them"},
        {"umount2", "unmounts; the pod's mounts are not QEMU's to change"},
        {"pivot_root", "replaces the root filesystem: a container escape step"},
        {"chroot", "changes the root directory: with a leaked fd, an escape"},
        {"fsopen", "the new mount API: as powerful as mount"},
        {"fsconfig", "the new mount API: as powerful as mount"},
        {"fsmount", "the new mount API: as powerful as mount"},
        {"fspick", "the new mount API: reconfigures existing mounts"},
        {"move_mount", "the new mount API: attaches mounts"},
        {"open_tree", "the new mount API: clones mount trees"},
        {"mount_setattr", "changes mount flags (nosuid, read-only) of existing mounts"},
        {"open_by_handle_at", "opens files by handle, around path checks (the 'shocker' escape)"},
        // Other processes: qshim and the helpers may share QEMU's uid.
        {"ptrace", "controls another process of the same uid, such as qshim or a helper"},
        {"process_vm_readv", "reads another process's memory"},
        {"process_vm_writev", "writes another process's memory"},
        {"pidfd_getfd", "copies an fd out of another process"},
        {"kcmp", "compares kernel objects of other processes: an information leak"},
        // Namespaces: new user namespaces expose kernel code that unprivileged users cannot
        // otherwise reach, and joining one is how escapes move between containers.
        {"unshare", "creates namespaces, exposing kernel attack surface"},
        {"setns", "joins another process's namespaces"},
        // The kernel itself.
        {"kexec_load", "replaces the running kernel"},
        {"kexec_file_load", "replaces the running kernel"},
        {"init_module", "loads kernel code"},
        {"finit_module", "loads kernel code"},
        {"delete_module", "unloads kernel code"},
        {"bpf", "loads eBPF into the kernel; QEMU uses it only for virtio-net RSS, never enabled"},
        {"perf_event_open", "a large kernel attack surface and a side channel into the host"},
        {"userfaultfd",
         "handles page faults in user space, widening kernel race windows; only post-copy "
         "migration needs it, and qshim does not use post-copy"},
        {"keyctl", "the kernel keyring, shared by every process of the uid"},
        {"add_key", "the kernel keyring, shared by every process of the uid"},
        {"request_key", "the kernel keyring; can call up to user space helpers"},
        {"syslog", "reads the kernel log: addresses that defeat KASLR"},
        {"reboot", "reboots or halts the host"},
        {"swapon", "changes the host's swap"},
        {"swapoff", "changes the host's swap"},
        {"acct", "switches process accounting for the whole host"},
        {"quotactl", "changes disk quotas"},
        {"quotactl_fd", "changes disk quotas"},
        {"iopl", "raw access to the host's I/O ports"},
        {"ioperm", "raw access to the host's I/O ports"},
        {"settimeofday", "sets the host clock"},
        {"clock_settime", "sets the host clock"},
        {"sethostname", "renames the host (or the pod)"},
        {"setdomainname", "renames the host's NIS domain"},
        {"vhangup", "hangs up the controlling terminal of others"},
        {"fanotify_init", "watches the whole filesystem"},
        {"lookup_dcookie", "resolves kernel directory cookies: an information leak"},
        {"uselib", "a legacy loader call, a source of kernel bugs"},
        {"personality", "disables ASLR for the process and its children"},
    };
    return table;
}

// clone(2) with any of these is an unshare(2) by another name.
const std::vector<DeniedCloneFlag>& denied_clone_flags() {
    static const std::vector<DeniedCloneFlag> flags = {
        {CLONE_NEWUSER, "CLONE_NEWUSER"},     {CLONE_NEWNS, "CLONE_NEWNS"},
        {CLONE_NEWPID, "CLONE_NEWPID"},       {CLONE_NEWNET, "CLONE_NEWNET"},
        {CLONE_NEWUTS, "CLONE_NEWUTS"},       {CLONE_NEWIPC, "CLONE_NEWIPC"},
        {CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}, {CLONE_NEWTIME, "CLONE_NEWTIME"},
    };
    return flags;
}

namespace {

struct CtxDeleter {
    void operator()(void* ctx) const { seccomp_release(ctx); }
};

uint32_t action_for(spec::SeccompMode mode) {
    switch (mode) {
        case spec::SeccompMode::kill:
            return SCMP_ACT_KILL_PROCESS;
        case spec::SeccompMode::log:
            return SCMP_ACT_LOG;
        default:
            return SCMP_ACT_ERRNO(EPERM);
    }
}

Error filter_error(const std::string& what, int rc) {
    return make_error(Errc::internal, fmt::format("{}: {}", what, std::strerror(-rc)),
                      "building the seccomp filter");
}

}  // namespace

Result<std::vector<sock_filter>> build_seccomp_filter(spec::SeccompMode mode) {
    if (mode == spec::SeccompMode::off) return std::vector<sock_filter>{};
    std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
    if (!ctx) return filter_error("seccomp_init", -ENOMEM);
    // Calls of another ABI (i386's int 0x80, x32) would not match these rules: QEMU never makes
    // them, so one is an attack and kills the whole process (libseccomp's default kills only the
    // thread, which could leave QEMU wedged holding a lock).
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        rc < 0)
        return filter_error("seccomp_attr_set(BADARCH)", rc);
    // The child sets no_new_privs itself, before installing the program.
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0)
        return filter_error("seccomp_attr_set", rc);
    const uint32_t action = action_for(mode);
    for (const auto& entry : denied_syscalls()) {
        int nr = seccomp_syscall_resolve_name(std::string(entry.name).c_str());
        if (nr == __NR_SCMP_ERROR) continue;  // not a call on this architecture
        if (int rc = seccomp_rule_add(ctx.get(), action, nr, 0); rc < 0)
            return filter_error(fmt::format("adding {}", entry.name), rc);
    }
    for (const auto& f : denied_clone_flags())
        if (int rc = seccomp_rule_add(ctx.get(), action, SCMP_SYS(clone), 1,
                                      SCMP_A0(SCMP_CMP_MASKED_EQ, f.flag, f.flag));
            rc < 0)
            return filter_error(fmt::format("adding clone({})", f.name), rc);
    // clone3 passes its flags in memory, where a filter cannot look: it fails as if the kernel
    // lacked it, and glibc falls back to clone, whose flags are checked above. Not a denial, so
    // the same in every mode (killing on it would kill QEMU at its first thread).
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0); rc < 0)
        return filter_error("adding clone3", rc);

    qshim::detail::UniqueFd out(memfd_create("qshim-seccomp", MFD_CLOEXEC));
    if (!out) return filter_error("memfd_create", -errno);
    if (int rc = seccomp_export_bpf(ctx.get(), out.get()); rc < 0)
        return filter_error("seccomp_export_bpf", rc);
    off_t size = lseek(out.get(), 0, SEEK_END);
    if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
        return filter_error("exported program has a bad size", -EINVAL);
    std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
    if (pread(out.get(), program.data(), static_cast<size_t>(size), 0) != size)
        return filter_error("reading the exported program", -errno);
    return program;
}

}  // namespace qshim::launcher::detail
