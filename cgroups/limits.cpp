// discover(): qshim's cgroup limits, v1, v2 or hybrid.
#include <fmt/format.h>
#include <sys/stat.h>

#include <qshim/cgroups.hpp>

#include "cgroups/files.hpp"
#include "cgroups/hierarchy.hpp"

namespace qshim::cgroups {

using detail::ControllerDir;
using detail::read_optional;

namespace {

// v1 writes "no limit" as LONG_MAX rounded down to the page size (0x7FFFFFFFFFFFF000 with 4 KiB
// pages, ...F0000 with 64 KiB ones): anything from 2^62 up is that, not a limit anyone set.
constexpr uint64_t v1_unlimited = 1ull << 62;

std::string parent_of(const std::string& dir) {
    auto slash = dir.rfind('/');
    return slash == std::string::npos || slash == 0 ? "/" : dir.substr(0, slash);
}

// Calls `visit(folder)` for qshim's cgroup and each ancestor up to the mount point, nearest
// first; stops when visit returns false.
template <typename Visit>
Result<void> climb(const std::string& root, const ControllerDir& at, Visit visit) {
    std::string dir = at.dir;
    while (true) {
        auto more = visit(root + dir);
        if (!more) return std::move(more).error();
        if (!*more || dir == at.top || dir.size() <= at.top.size()) return {};
        std::string up = parent_of(dir);
        if (up == dir) return {};  // "/": nothing above
        dir = std::move(up);
    }
}

// The cgroup's cpuset: the nearest folder (itself, or an ancestor where the controller is not
// enabled below) that has the file.
Result<std::optional<CpuSet>> cpuset_file(const std::string& root, const ControllerDir& at,
                                          std::initializer_list<const char*> names,
                                          std::string& where) {
    std::optional<CpuSet> found;
    auto done = climb(root, at, [&](const std::string& dir) -> Result<bool> {
        for (const char* name : names) {
            auto set = detail::read_cpu_list(dir + "/" + name);
            if (!set) return std::move(set).error();
            if (!*set) continue;
            // v1: an empty effective set means "not configured here"; keep climbing.
            if ((*set)->empty()) continue;
            found = std::move(**set);
            where = dir;
            return false;
        }
        return true;
    });
    if (!done) return std::move(done).error();
    return found;
}

// The lowest limit on the way up: `read` gives one folder's limit (nullopt: none there).
template <typename Read>
Result<std::optional<uint64_t>> lowest(const std::string& root, const ControllerDir& at,
                                       Read read) {
    std::optional<uint64_t> low;
    auto done = climb(root, at, [&](const std::string& dir) -> Result<bool> {
        auto limit = read(dir);
        if (!limit) return std::move(limit).error();
        if (*limit && (!low || **limit < *low)) low = **limit;
        return true;
    });
    if (!done) return std::move(done).error();
    return low;
}

Result<std::optional<uint64_t>> limit_file(const std::string& path, bool v1_memory) {
    auto text = read_optional(path);
    if (!text) return std::move(text).error();
    if (!*text) return std::optional<uint64_t>{};
    auto value = detail::parse_limit(**text, path);
    if (!value) return std::move(value).error();
    if (v1_memory && *value && **value >= v1_unlimited) return std::optional<uint64_t>{};
    return *value;
}

// cpu.max ("max 100000", "150000 100000") or v1's cfs_quota_us (-1: none) and cfs_period_us.
Result<std::optional<CpuQuota>> quota_in(const std::string& dir, bool v2) {
    if (v2) {
        std::string path = dir + "/cpu.max";
        auto text = read_optional(path);
        if (!text) return std::move(text).error();
        if (!*text) return std::optional<CpuQuota>{};
        auto space = (*text)->find(' ');
        std::string quota = (*text)->substr(0, space);
        std::string period = space == std::string::npos ? "100000" : (*text)->substr(space + 1);
        auto q = detail::parse_limit(quota, path);
        auto p = detail::parse_limit(period, path);
        if (!q) return std::move(q).error();
        if (!p) return std::move(p).error();
        if (!*q || !*p || **p == 0) return std::optional<CpuQuota>{};
        return std::optional<CpuQuota>(CpuQuota{**q, **p});
    }
    auto quota = read_optional(dir + "/cpu.cfs_quota_us");
    if (!quota) return std::move(quota).error();
    if (!*quota || **quota == "-1") return std::optional<CpuQuota>{};
    auto q = detail::parse_limit(**quota, dir + "/cpu.cfs_quota_us");
    if (!q) return std::move(q).error();
    auto period = read_optional(dir + "/cpu.cfs_period_us");
    if (!period) return std::move(period).error();
    auto p = detail::parse_limit(period->value_or("100000"), dir + "/cpu.cfs_period_us");
    if (!p) return std::move(p).error();
    if (!*q || !*p || **p == 0) return std::optional<CpuQuota>{};
    return std::optional<CpuQuota>(CpuQuota{**q, **p});
}

// What the host has online, for when no cpuset controller can be read.
Result<CpuSet> host_online(const std::string& root, const char* what) {
    auto set = detail::read_cpu_list(root + "/sys/devices/system/" + what + "/online");
    if (!set) return std::move(set).error();
    if (!*set) return CpuSet{0};  // no NUMA support: one node, 0
    return std::move(**set);
}

}  // namespace

Result<Limits> discover(const Roots& roots) {
    const std::string context = "reading qshim's cgroup";
    const std::string& root = roots.root;
    auto mountinfo = detail::read_required(root + "/proc/self/mountinfo");
    if (!mountinfo) return make_error(Errc::io, mountinfo.error().message, context);
    auto membership = detail::read_required(root + "/proc/self/cgroup");
    if (!membership) return make_error(Errc::io, membership.error().message, context);
    auto located =
        detail::locate(detail::parse_mountinfo(*mountinfo), detail::parse_proc_cgroup(*membership));
    Limits limits;
    limits.mode = located.mode;
    limits.notes = located.notes;
    // A folder that is not there would read as "no limit" everywhere: say so instead.
    for (auto it = located.dirs.begin(); it != located.dirs.end();) {
        struct stat st {};
        if (stat((root + it->second.dir).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
            ++it;
            continue;
        }
        limits.notes.push_back(
            fmt::format("{}: the cgroup folder {} does not exist", it->first, it->second.dir));
        it = located.dirs.erase(it);
    }
    auto fail = [&](const Error& e) { return make_error(Errc::io, e.message, context); };
    const bool v2 = located.mode == Mode::v2;

    if (auto it = located.dirs.find("cpuset"); it != located.dirs.end()) {
        auto cpus = cpuset_file(
            root, it->second,
            v2 ? std::initializer_list<const char*>{"cpuset.cpus.effective"}
               : std::initializer_list<const char*>{"cpuset.effective_cpus", "cpuset.cpus"},
            limits.cpuset_dir);
        if (!cpus) return fail(cpus.error());
        std::string mems_dir;
        auto mems = cpuset_file(
            root, it->second,
            v2 ? std::initializer_list<const char*>{"cpuset.mems.effective"}
               : std::initializer_list<const char*>{"cpuset.effective_mems", "cpuset.mems"},
            mems_dir);
        if (!mems) return fail(mems.error());
        if (*cpus) limits.cpus = std::move(**cpus);
        if (*mems) limits.mems = std::move(**mems);
    }
    if (limits.cpus.empty()) {
        auto online = host_online(root, "cpu");
        if (!online) return fail(online.error());
        limits.cpus = *online;
        limits.notes.push_back("no cpuset to read: all online CPUs " + to_cpu_list(*online));
    }
    if (limits.mems.empty()) {
        auto online = host_online(root, "node");
        if (!online) return fail(online.error());
        limits.mems = *online;
    }
    if (auto it = located.dirs.find("memory"); it != located.dirs.end()) {
        limits.memory_dir = root + it->second.dir;
        const char* file = v2 ? "/memory.max" : "/memory.limit_in_bytes";
        auto low = lowest(root, it->second,
                          [&](const std::string& dir) { return limit_file(dir + file, !v2); });
        if (!low) return fail(low.error());
        limits.memory_bytes = *low;
    }
    if (auto it = located.dirs.find("cpu"); it != located.dirs.end()) {
        limits.cpu_dir = root + it->second.dir;
        std::optional<CpuQuota> tightest;
        auto done = climb(root, it->second, [&](const std::string& dir) -> Result<bool> {
            auto quota = quota_in(dir, v2);
            if (!quota) return std::move(quota).error();
            // Compare quota/period without dividing: a*d < c*b.
            if (*quota && (!tightest || (**quota).quota_us * tightest->period_us <
                                            tightest->quota_us * (**quota).period_us))
                tightest = **quota;
            return true;
        });
        if (!done) return fail(done.error());
        limits.cpu_quota = tightest;
    }
    if (auto it = located.dirs.find("pids"); it != located.dirs.end()) {
        limits.pids_dir = root + it->second.dir;
        auto low = lowest(root, it->second, [&](const std::string& dir) {
            return limit_file(dir + "/pids.max", false);
        });
        if (!low) return fail(low.error());
        limits.pids_max = *low;
    }
    return limits;
}

Result<CpuSet> read_cpuset(const Limits& limits) {
    if (limits.cpuset_dir.empty()) return limits.cpus;
    const char* names[] = {
        limits.mode == Mode::v2 ? "cpuset.cpus.effective" : "cpuset.effective_cpus", "cpuset.cpus"};
    for (const char* name : names) {
        auto set = detail::read_cpu_list(limits.cpuset_dir + "/" + name);
        if (!set) return make_error(Errc::io, set.error().message, "reading qshim's cpuset");
        if (*set) return std::move(**set);
    }
    return make_error(Errc::io, limits.cpuset_dir + ": no cpuset file left",
                      "reading qshim's cpuset");
}

}  // namespace qshim::cgroups
