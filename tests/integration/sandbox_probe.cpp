// Started by qshim in QEMU's place (`qshim run --qemu sandbox_probe`), through the same launch
// path and sandbox: reports what it is (ids, capabilities, no_new_privs, seccomp, rlimits) and
// what happens when it makes calls the deny-list names. Writes `key=value` lines to the file
// named by $QSHIM_PROBE_REPORT, then exits 1 (so qshim reports a QEMU that failed to start).
#include <linux/keyctl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

FILE* out = nullptr;

// One call: "name=0" when it succeeded, else "name=ERRNO_NAME".
void report(const char* name, long rc) {
    fprintf(out, "%s=%s\n", name, rc >= 0 ? "0" : strerrorname_np(errno));
    fflush(out);
}

}  // namespace

int main() {
    const char* path = getenv("QSHIM_PROBE_REPORT");
    if (!path || !(out = fopen(path, "w"))) return 2;
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        for (const char* key : {"Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:",
                                "CapBnd:", "CapAmb:", "NoNewPrivs:", "Seccomp:"})
            if (line.rfind(key, 0) == 0) {  // "Uid:\t107\t107..." -> "status.Uid=107 107..."
                std::string value = line.substr(strlen(key));
                for (char& c : value)
                    if (c == '\t') c = ' ';
                fprintf(out, "status.%.*s=%s\n", static_cast<int>(strlen(key) - 1), key,
                        value.c_str() + (value.empty() ? 0 : 1));
            }
    rlimit core{};
    getrlimit(RLIMIT_CORE, &core);
    fprintf(out, "rlimit.core=%llu\n", static_cast<unsigned long long>(core.rlim_max));
    report("getpid", getpid());  // allowed: the filter denies only what it lists
    report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1));
    report("personality", syscall(SYS_personality, 0xffffffffUL));
    report("unshare", unshare(CLONE_NEWUSER));
    report("clone3", syscall(SYS_clone3, nullptr, 0));
    report("mount", mount("none", "/", nullptr, MS_REMOUNT | MS_BIND, nullptr));
    // Last: it succeeds without a filter and would make us a tracee.
    report("ptrace", ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
    fprintf(out, "done=1\n");
    fclose(out);
    return 1;
}
