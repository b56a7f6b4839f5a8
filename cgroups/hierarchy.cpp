// parse_mountinfo(), parse_proc_cgroup(), locate(): from two /proc files to controller folders.
#include "cgroups/hierarchy.hpp"

#include <fmt/format.h>

#include <sstream>

namespace qshim::cgroups::detail {

namespace {

constexpr const char* wanted[] = {"cpuset", "memory", "cpu", "pids"};

std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> out;
    while (true) {
        size_t at = text.find(sep);
        out.push_back(text.substr(0, at));
        if (at == std::string_view::npos) return out;
        text.remove_prefix(at + 1);
    }
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view field) {
    std::string out;
    for (size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' &&
            field[i + 1] <= '3' && field[i + 2] >= '0' && field[i + 2] <= '7' &&
            field[i + 3] >= '0' && field[i + 3] <= '7') {
            out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                     (field[i + 3] - '0'));
            i += 3;
        } else {
            out += field[i];
        }
    }
    return out;
}

std::set<std::string> names(std::string_view list) {
    std::set<std::string> out;
    if (list.empty()) return out;
    for (auto name : split(list, ',')) out.emplace(name);
    return out;
}

// `path` as seen through a mount showing cgroup `root`: the folder under the mount point, or
// empty when the path is outside what the mount shows.
std::optional<std::string> through(const CgroupMount& m, const std::string& path) {
    // A cgroup outside this process's cgroup namespace shows as "/../x": not reachable here.
    if (path.empty() || path[0] != '/' || path.find("/..") != std::string::npos)
        return std::nullopt;
    std::string root = m.root == "/" ? "" : m.root;
    if (path.compare(0, root.size(), root) != 0) return std::nullopt;
    std::string rest = path.substr(root.size());
    if (!rest.empty() && rest[0] != '/') return std::nullopt;  // "/a" is not under "/ab"
    if (rest == "/") rest.clear();
    return m.mount_point + rest;
}

}  // namespace

std::vector<CgroupMount> parse_mountinfo(std::string_view text) {
    std::vector<CgroupMount> mounts;
    for (auto line : split(text, '\n')) {
        auto fields = split(line, ' ');
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        size_t dash = 6;
        while (dash < fields.size() && fields[dash] != "-") ++dash;
        if (fields.size() < 5 || dash + 3 >= fields.size()) continue;
        std::string_view type = fields[dash + 1];
        if (type != "cgroup" && type != "cgroup2") continue;
        CgroupMount m;
        m.root = unescape(fields[3]);
        m.mount_point = unescape(fields[4]);
        // Both are absolute paths; anything else is a line we do not understand.
        if (m.root.empty() || m.root[0] != '/' || m.mount_point.empty() || m.mount_point[0] != '/')
            continue;
        m.v2 = type == "cgroup2";
        if (!m.v2) {
            // Super options: "rw,cpu,cpuacct"; a named hierarchy is "name=systemd".
            for (auto option : split(fields[dash + 3], ',')) {
                bool plain =
                    option != "rw" && option != "ro" && option.find('=') == std::string_view::npos;
                if (plain || option.rfind("name=", 0) == 0) m.controllers.emplace(option);
            }
        }
        mounts.push_back(std::move(m));
    }
    return mounts;
}

std::vector<Membership> parse_proc_cgroup(std::string_view text) {
    std::vector<Membership> groups;
    for (auto line : split(text, '\n')) {
        // hierarchy-ID:controller-list:cgroup-path (the path may itself hold ':')
        size_t a = line.find(':');
        if (a == std::string_view::npos) continue;
        size_t b = line.find(':', a + 1);
        if (b == std::string_view::npos) continue;
        Membership g;
        g.v2 = line.substr(0, a) == "0" && b == a + 1;
        g.controllers = names(line.substr(a + 1, b - a - 1));
        g.path = std::string(line.substr(b + 1));
        groups.push_back(std::move(g));
    }
    return groups;
}

Located locate(const std::vector<CgroupMount>& mounts, const std::vector<Membership>& groups) {
    Located out;
    bool v1 = false, v2 = false;
    for (const auto& m : mounts) {
        out.mounted = true;
        if (m.v2)
            v2 = true;
        else
            for (const char* c : wanted) v1 = v1 || m.controllers.count(c);
    }
    out.mode = v1 ? (v2 ? Mode::hybrid : Mode::v1) : Mode::v2;
    if (!out.mounted) {
        out.notes.push_back("no cgroup filesystem is mounted");
        return out;
    }
    for (const char* controller : wanted) {
        // The hierarchy that holds the controller: a v1 mount naming it, else (v2 and hybrid)
        // the unified one.
        const CgroupMount* mount = nullptr;
        const Membership* group = nullptr;
        for (const auto& m : mounts)
            if (!m.v2 && m.controllers.count(controller)) {
                mount = &m;
                break;
            }
        if (mount) {
            for (const auto& g : groups)
                if (!g.v2 && g.controllers.count(controller)) group = &g;
        } else if (out.mode == Mode::v2) {
            for (const auto& m : mounts)
                if (m.v2) mount = &m;
            for (const auto& g : groups)
                if (g.v2) group = &g;
        }
        if (!mount || !group) {
            out.notes.push_back(
                fmt::format("no {} controller is mounted for this process", controller));
            continue;
        }
        // Several mounts of one hierarchy (bind mounts): the first that shows our cgroup.
        std::optional<std::string> dir;
        for (const auto& m : mounts)
            if (m.v2 == mount->v2 && m.controllers == mount->controllers)
                if ((dir = through(m, group->path))) {
                    out.dirs[controller] = {*dir, m.mount_point};
                    break;
                }
        if (!dir)
            out.notes.push_back(
                fmt::format("{}: this process's cgroup {} is outside what is mounted", controller,
                            group->path));
    }
    return out;
}

}  // namespace qshim::cgroups::detail
