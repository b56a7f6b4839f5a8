// Where qshim's cgroup is: /proc/self/mountinfo (what is mounted where) and /proc/self/cgroup
// (which cgroup of each hierarchy this process is in), joined per controller.
#pragma once

#include <map>
#include <qshim/cgroups.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace qshim::cgroups::detail {

struct CgroupMount {
    std::string root;  // the cgroup this mount shows at its mount point ("/": the whole tree)
    std::string mount_point;  // absolute, escapes decoded
    bool v2 = false;
    std::set<std::string> controllers;  // v1: from the super options (cpu, cpuset, name=systemd)
};
// The cgroup and cgroup2 mounts of a mountinfo text.
std::vector<CgroupMount> parse_mountinfo(std::string_view text);

struct Membership {
    std::set<std::string> controllers;  // empty for the v2 line ("0::/path")
    std::string path;
    bool v2 = false;
};
std::vector<Membership> parse_proc_cgroup(std::string_view text);

// One controller's folder: qshim's cgroup, and the mount point above which its ancestors end.
struct ControllerDir {
    std::string dir;
    std::string top;
};

struct Located {
    Mode mode = Mode::v2;
    bool mounted = false;                       // any cgroup filesystem at all
    std::map<std::string, ControllerDir> dirs;  // cpuset, memory, cpu, pids: those reachable
    std::vector<std::string> notes;
};

// Joins the two files for the controllers qshim reads. Paths are unprefixed (the caller adds
// its root when reading).
Located locate(const std::vector<CgroupMount>& mounts, const std::vector<Membership>& groups);

}  // namespace qshim::cgroups::detail
