// The confinement of QEMU (and of every helper qshim starts): planned before fork, applied in the
// child between fork and exec. docs/security.md explains each layer.
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

namespace qshim::launcher::detail {

// What qshim itself holds, read once before planning. Tests build one by hand.
struct HostCredentials {
    uid_t uid = 0;
    gid_t gid = 0;
    bool cap_setuid = false;
    bool cap_setgid = false;
    bool cap_setpcap = false;       // dropping from the bounding set needs it
    bool cap_sys_resource = false;  // raising a hard rlimit needs it
    rlimit nofile{};
    rlimit memlock{};
};
HostCredentials current_credentials();

struct Ids {
    uid_t uid = 0;
    gid_t gid = 0;
};

struct RlimitSetting {
    int resource = 0;
    const char* name = "";
    rlimit value{};
};

struct SandboxPlan {
    Ids ids;                      // QEMU's uid and gid
    bool change_ids = false;      // qshim runs as other ids (root): switch, clearing groups
    bool clear_bounding = false;  // qshim holds CAP_SETPCAP: empty the bounding set too
    std::vector<RlimitSetting> rlimits;
    std::vector<sock_filter> seccomp;  // empty: no filter of ours
    // For a helper that builds a sandbox of its own (virtiofsd chroots into its folder): after
    // everything above, a user namespace and a mount namespace of its own, in which its uid and
    // gid (and nothing else) map to 0, so it holds capabilities over nothing but itself. Such a
    // plan has no seccomp program of ours (the helper installs its own). Empty maps: none.
    std::string uid_map;  // "0 107 1"
    std::string gid_map;
    // A folder bind-mounted read-only onto itself in that mount namespace (a read-only share).
    std::string read_only_bind;
    bool own_namespaces() const { return !uid_map.empty(); }
};

// Open files a VM needs: QEMU's own (libraries, event loop, QMP, chardevs) plus, per device,
// its image or socket and its virtqueues' eventfds (ioeventfd and irqfd each).
rlim_t nofile_needed(const spec::VmSpec& spec);
// Locked memory: launcher::memlock_needed() (include/qshim/resources.hpp), shared with the plan.

// The ids QEMU runs as: the spec's runAs, else 107:107 when qshim is root, else qshim's own.
Ids qemu_ids(const spec::VmSpec& spec, const HostCredentials& host);

// Everything the child will do, decided now: ids (refused when qshim cannot switch to them),
// rlimits (refused, naming the value, when a limit must rise past what qshim may set), and the
// seccomp program. Errc::launch with a message naming the spec field.
Result<SandboxPlan> plan_sandbox(const spec::VmSpec& spec, const HostCredentials& host);

// A plan made at launch, for a process started later, once qshim has given up what it no longer
// needs (lock_down_supervisor): the bounding set is left alone without CAP_SETPCAP (qshim's own
// is already down to the few it kept), and without CAP_SYS_RESOURCE each limit is held to what
// qshim may still set (its own hard limits).
SandboxPlan within_current_credentials(SandboxPlan plan, const HostCredentials& host);

// Runs in the forked child, after its fds are in place and before exec: rlimits, ids and
// supplementary groups, every capability (libcap-ng), no_new_privs, the parent-death signal again
// (an id change clears it), then the seccomp program last. Returns 0 or the errno of the step
// that failed. Only system calls, except libcap-ng reading /proc/self/status with stdio while it
// clears the bounding set: glibc keeps malloc and stdio usable in a forked child (fork resets
// their locks), which is what makes that safe.
int apply_sandbox(const SandboxPlan& plan, pid_t parent);

// Runs in the forked child after apply_sandbox, for a plan with own_namespaces(): unshares a user
// and a mount namespace, writes the maps (setgroups denied first, as an unprivileged map needs),
// makes read_only_bind read-only, and arms the parent-death signal again. 0 or an errno.
int enter_own_namespaces(const SandboxPlan& plan, pid_t parent);

// `plan` for a helper that sandboxes itself: the same ids, limits and capabilities, no filter of
// ours, its own namespaces; its open-file limit raised to the hard limit (a file server holds
// one descriptor per file the guest has looked up).
SandboxPlan own_namespaces_plan(const SandboxPlan& plan, const std::string& read_only_bind);

}  // namespace qshim::launcher::detail
