// preflight(): the files and folders a spec needs, checked before anything starts.
#include "launcher/preflight.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/unix_socket.hpp"

namespace qshim::launcher::detail {

namespace fs = std::filesystem;

bool socket_is_served(const std::string& path);

namespace {

struct Check {
    std::string field;
    std::string path;
};

std::string readable(const std::string& path, bool write) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return std::strerror(errno);
    if (S_ISDIR(st.st_mode)) return "is a directory";
    if (access(path.c_str(), write ? R_OK | W_OK : R_OK) != 0)
        return std::string(write ? "not readable and writable: " : "not readable: ") +
               std::strerror(errno);
    return {};
}

// An inherited tap fd must be open here and be a tap: any other fd (one of qshim's own, which
// may have taken a number nobody passed) would silently give QEMU the wrong file.
std::string tap_fd_problem(int fd) {
    if (fcntl(fd, F_GETFD) < 0)
        return fmt::format("fd {} is not open in qshim (hand the tap over as fd {})", fd, fd);
    ifreq ifr{};
    if (ioctl(fd, TUNGETIFF, &ifr) != 0)
        return fmt::format("fd {} is not a tap device (TUNGETIFF: {})", fd, std::strerror(errno));
    if (!(ifr.ifr_flags & IFF_TAP))
        return fmt::format("fd {} is a tun device, not a tap (IFF_TAP unset)", fd);
    return {};
}

std::string socket_place(const std::string& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) return "exists and is not a socket";
    if (lstat(path.c_str(), &st) == 0 && socket_is_served(path))
        return "is in use: another process serves it";
    auto dir = fs::path(path).parent_path();
    std::error_code ec;
    if (!dir.empty() && !fs::is_directory(dir, ec))
        return "its folder " + dir.string() + " does not exist";
    return {};
}

}  // namespace

Result<void> preflight(const spec::VmSpec& spec) {
    std::vector<std::string> problems;
    auto file = [&](const std::string& field, const std::string& path, bool write) {
        if (auto why = readable(path, write); !why.empty())
            problems.push_back(fmt::format("{}: {}: {}", field, path, why));
    };
    if (!spec.boot.kernel.empty()) file("boot.kernel", spec.boot.kernel, false);
    if (!spec.boot.initrd.empty()) file("boot.initrd", spec.boot.initrd, false);
    for (size_t i = 0; i < spec.disks.size(); ++i)
        if (auto why = disk_file_problem(spec.disks[i]); !why.empty())
            problems.push_back(fmt::format("disks[{}] ({}): {}: {}", i, spec.disks[i].name,
                                           spec.disks[i].path, why));
    auto socket = [&](const std::string& field, const std::string& path) {
        if (path.empty()) return;
        if (auto why = socket_place(path); !why.empty())
            problems.push_back(fmt::format("{}: {}: {}", field, path, why));
    };
    socket("serial.socket", spec.serial.socket);
    socket("devices.guestAgent", spec.devices.guest_agent);
    for (size_t i = 0; i < spec.interfaces.size(); ++i)
        if (const auto& fd = spec.interfaces[i].backend.tap_fd)
            if (auto why = tap_fd_problem(*fd); !why.empty())
                problems.push_back(fmt::format("interfaces[{}].backend.fd ({}): {}", i,
                                               spec.interfaces[i].name, why));
    for (size_t i = 0; i < spec.interfaces.size(); ++i)
        if (spec.interfaces[i].backend.type == spec::BackendType::stream) {
            std::error_code ec;
            if (!fs::exists(spec.interfaces[i].backend.socket, ec))
                problems.push_back(fmt::format(
                    "interfaces[{}].backend.socket: {}: no such socket (is passt running?)", i,
                    spec.interfaces[i].backend.socket));
        }
    if (!spec.serial.log.empty()) {
        auto dir = fs::path(spec.serial.log).parent_path();
        std::error_code ec;
        if (!dir.empty() && !fs::is_directory(dir, ec))
            problems.push_back(
                fmt::format("serial.log: {}: its folder does not exist", spec.serial.log));
    }
    if (problems.empty()) return {};
    std::string message =
        problems.size() == 1 ? problems[0] : fmt::format("{} problems:", problems.size());
    if (problems.size() > 1)
        for (const auto& p : problems) message += "\n  " + p;
    return make_error(Errc::launch, message, "checking what VM " + spec.name + " needs");
}

std::string disk_file_problem(const spec::Disk& disk) {
    return readable(disk.path, !disk.read_only);
}

// Anything but a clear "nobody listens" counts as served: never remove what might be live.
bool socket_is_served(const std::string& path) {
    return qshim::detail::probe_unix_socket(path) != qshim::detail::SocketProbe::stale;
}

void remove_stale_socket(const std::string& path) {
    struct stat st {};
    // Only a socket nobody listens on is stale; another VM's live console must not vanish.
    if (!path.empty() && lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        !socket_is_served(path))
        unlink(path.c_str());
}

void remove_stale_sockets(const spec::VmSpec& spec) {
    remove_stale_socket(spec.serial.socket);
    remove_stale_socket(spec.devices.guest_agent);
}

}  // namespace qshim::launcher::detail
