// preflight(): the files and folders a spec needs, checked before anything starts.
#include "launcher/preflight.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/unique_fd.hpp"
#include "common/unix_socket.hpp"
#include "launcher/process.hpp"
#include "launcher/state_dir.hpp"

namespace qshim::launcher::detail {

namespace fs = std::filesystem;
using qshim::detail::UniqueFd;

bool socket_is_served(const std::string& path);

namespace {

// A file QEMU opens itself, and how.
struct Need {
    std::string field;  // "disks[0] (root)"
    std::string path;
    int mode;          // R_OK, W_OK, X_OK
    std::string what;  // "readable", "readable and writable", ...
    std::string at;    // the spec field naming it ("disks[0].path"), when there is one
};

// One thing that stops the start, and the spec field it is about (empty: none in particular).
struct Problem {
    std::string text;
    std::string at;
    Problem(std::string text, std::string at = {}) : text(std::move(text)), at(std::move(at)) {}
};

std::string mode_words(int mode) {
    if (mode == (W_OK | X_OK)) return "writable (QEMU creates a file in it)";
    if (mode == (R_OK | W_OK)) return "readable and writable";
    if (mode == W_OK) return "writable";
    if (mode == (R_OK | X_OK)) return "readable and searchable";
    if (mode == (R_OK | W_OK | X_OK)) return "readable, writable and searchable";
    return "readable";
}

// What stat alone says against a file: missing, or a directory.
std::string file_state(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return std::strerror(errno);
    if (S_ISDIR(st.st_mode)) return "is a directory";
    return {};
}

// cache none opens the image with O_DIRECT, which some file systems refuse with EINVAL (tmpfs
// before Linux 6.6, as on Debian 12's kernel); QEMU would then fail with a vaguer message.
std::string direct_io_problem(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        close(fd);
        return {};
    }
    if (errno != EINVAL) return {};  // a missing or unreadable file is told on its own
    return "its file system does not take O_DIRECT (tmpfs before Linux 6.6 does not): use cache "
           "writethrough";
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

// Whether QEMU (slirp) will be able to bind a forward's host port: bound and released here, as
// slirp binds it (SO_REUSEADDR). A port in use is reported now rather than by QEMU mid-start.
std::string forward_problem(const spec::PortForward& f, const QemuIdentity& qemu) {
    unsigned first_unprivileged = 1024;
    if (std::ifstream in("/proc/sys/net/ipv4/ip_unprivileged_port_start"); in)
        in >> first_unprivileged;
    if (qemu.ids.uid != 0 && f.host_port < first_unprivileged)
        return fmt::format(
            "port {} is privileged (below {}), and QEMU runs as {}; use a port "
            "from {} up",
            f.host_port, first_unprivileged, describe(qemu), first_unprivileged);
    UniqueFd fd(socket(
        AF_INET, (f.protocol == spec::Protocol::udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
    if (!fd) return fmt::format("socket: {}", std::strerror(errno));
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(f.host_port);
    if (inet_pton(AF_INET, f.host_address.c_str(), &addr.sin_addr) != 1)
        return "not an IPv4 address";
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return {};
    if (errno == EADDRINUSE) return "is in use: another process has bound it";
    if (errno == EADDRNOTAVAIL) return "the address is not one of this host's";
    if (errno == EACCES) return "is privileged and qshim may not bind it";
    return std::strerror(errno);
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

std::string folder_of(const std::string& path) {
    auto dir = fs::path(path).parent_path();
    return dir.empty() ? std::string(".") : dir.string();
}

// Asks the kernel, as QEMU, about every need at once (one child for all); adds a problem per
// refusal, except for the need at `kvm_index` (the last, when there is one), whose errno is
// returned for the caller to judge.
int check_needs(const std::vector<Need>& needs, const QemuIdentity& qemu,
                std::optional<size_t> kvm_index, std::vector<Problem>& problems) {
    if (needs.empty()) return 0;
    std::vector<AccessRequest> requests;
    for (const auto& n : needs) requests.push_back({n.path, n.mode});
    auto results = access_as(qemu, requests);
    if (!results) {
        problems.push_back(results.error().what());
        return 0;
    }
    int kvm = 0;
    for (size_t i = 0; i < needs.size(); ++i)
        if (int err = (*results)[i]; err != 0 && i == kvm_index)
            kvm = err;
        else if (err != 0)
            problems.push_back(
                {fmt::format("{}: {}: not {} by {}: {}", needs[i].field, needs[i].path,
                             needs[i].what, describe(qemu), std::strerror(err)),
                 needs[i].at});
    return kvm;
}

// One problem: the error says it. Several: a count, then one per line. When the spec came from a
// file, each problem is a Diagnostic there too, at the field it is about when that is known, and
// the message starts with the count alone (what a reader of the diagnostics needs as a summary).
Error preflight_error(const spec::VmSpec& spec, const std::vector<Problem>& problems) {
    const bool located = !spec.source_file.empty();
    std::string message =
        problems.size() == 1 && !located
            ? problems[0].text
            : fmt::format("{} problem{}:", problems.size(), problems.size() == 1 ? "" : "s");
    if (problems.size() > 1 || located)
        for (const auto& p : problems) message += "\n  " + p.text;
    Error e = make_error(Errc::launch, message, "checking what VM " + spec.name + " needs");
    if (!located) return e;
    for (const auto& p : problems) {
        auto it = spec.positions.find(p.at);
        const spec::SourcePosition where =
            it == spec.positions.end() ? spec::SourcePosition{} : it->second;
        e.diagnostics.push_back({spec.source_file, where.line, where.column, "", p.text});
    }
    return e;
}

}  // namespace

Result<void> preflight(const spec::VmSpec& spec, const PreflightInput& input,
                       std::vector<std::string>& warnings) {
    std::vector<Problem> problems;
    std::vector<Need> needs;
    auto file = [&](const std::string& field, const std::string& path, int mode,
                    const std::string& at) {
        if (auto why = file_state(path); !why.empty())
            problems.push_back({fmt::format("{}: {}: {}", field, path, why), at});
        else
            needs.push_back({field, path, mode, mode_words(mode), at});
    };
    // QEMU creates a socket or file in this folder: search and write permission on it.
    auto creates_in = [&](const std::string& field, const std::string& path) {
        std::error_code ec;
        if (fs::is_directory(folder_of(path), ec))
            needs.push_back({field, folder_of(path), W_OK | X_OK, mode_words(W_OK | X_OK), {}});
    };
    if (!spec.boot.kernel.empty()) file("boot.kernel", spec.boot.kernel, R_OK, "boot.kernel");
    if (!spec.boot.initrd.empty()) file("boot.initrd", spec.boot.initrd, R_OK, "boot.initrd");
    bool storage_daemon_checked = false;
    for (size_t i = 0; i < spec.disks.size(); ++i) {
        const auto& d = spec.disks[i];
        if (d.storage_daemon && !storage_daemon_checked) {
            storage_daemon_checked = true;
            const std::string program = find_program(input.storage_daemon_binary);
            if (program.empty() || access(program.c_str(), X_OK) != 0)
                problems.push_back(
                    fmt::format("disks[{}] ({}).storageDaemon: {}: not found (install Debian's "
                                "qemu-system-common)",
                                i, d.name, input.storage_daemon_binary));
        }
        if (!d.vhost_user_socket.empty()) {
            // QEMU connects to the server's socket: it must be one, and QEMU may write to it.
            const std::string field = fmt::format("disks[{}] ({}).backend.socket", i, d.name);
            const std::string at = fmt::format("disks[{}].backend.socket", i);
            if (auto why = vhost_user_socket_problem(d.vhost_user_socket); !why.empty())
                problems.push_back(
                    {fmt::format("{}: {}: {}", field, d.vhost_user_socket, why), at});
            else
                needs.push_back({field, d.vhost_user_socket, W_OK, mode_words(W_OK), at});
            continue;
        }
        if (d.blank()) continue;  // qshim makes it, in the state directory
        if (d.from_folder()) {
            // qshim reads the folder itself to make the image: QEMU never opens it.
            std::error_code ec;
            if (!fs::is_directory(d.folder, ec))
                problems.push_back(
                    {fmt::format("disks[{}] ({}).folder: {}: {}", i, d.name, d.folder,
                                 fs::exists(d.folder, ec) ? "not a folder" : "no such folder"),
                     fmt::format("disks[{}].folder", i)});
            continue;
        }
        if (d.no_medium()) continue;  // an empty cdrom drive
        // An ephemeral disk's image is only read: the guest writes to its overlay.
        file(fmt::format("disks[{}] ({})", i, d.name), d.path,
             d.read_only || d.ephemeral ? R_OK : R_OK | W_OK, fmt::format("disks[{}].path", i));
        if (d.cache == spec::DiskCache::none)
            if (auto why = direct_io_problem(d.path); !why.empty())
                problems.push_back(
                    {fmt::format("disks[{}] ({}).cache none: {}: {}", i, d.name, d.path, why),
                     fmt::format("disks[{}].path", i)});
    }
    for (size_t i = 0; i < spec.interfaces.size(); ++i)
        if (spec.interfaces[i].backend.type == spec::BackendType::passt) {
            const std::string program = find_program(input.passt_binary);
            if (program.empty() || access(program.c_str(), X_OK) != 0)
                problems.push_back(
                    fmt::format("interfaces[{}] ({}).backend passt: {}: not found (install "
                                "Debian's passt)",
                                i, spec.interfaces[i].name, input.passt_binary));
            break;
        }
    for (size_t i = 0; i < spec.filesystems.size(); ++i) {
        const auto& fs = spec.filesystems[i];
        if (i == 0) {
            const std::string program = find_program(input.virtiofsd_binary);
            if (program.empty() || access(program.c_str(), X_OK) != 0)
                problems.push_back(fmt::format(
                    "filesystems[0] ({}): {}: not found (install Debian's qemu-system-common)",
                    fs.name, input.virtiofsd_binary));
        }
        // virtiofsd serves it as QEMU's uid: it must reach and read it, and write unless readOnly.
        const std::string field = fmt::format("filesystems[{}] ({}).path", i, fs.name);
        const std::string at = fmt::format("filesystems[{}].path", i);
        std::error_code ec;
        if (!fs::exists(fs.path, ec))
            problems.push_back({fmt::format("{}: {}: no such folder", field, fs.path), at});
        else if (!fs::is_directory(fs.path, ec))
            problems.push_back({fmt::format("{}: {}: not a folder", field, fs.path), at});
        else {
            int mode = fs.read_only ? R_OK | X_OK : R_OK | W_OK | X_OK;
            needs.push_back({field, fs.path, mode, mode_words(mode), at});
        }
    }
    if (spec.firmware.type == spec::FirmwareType::uefi) {
        auto code = ovmf_files(spec.firmware.secure_boot, input.firmware_dir).code;
        if (auto why = file_state(code); !why.empty())
            problems.push_back(
                fmt::format("firmware.type uefi: {}: {} (install Debian's ovmf)", code, why));
        else
            needs.push_back({"firmware", code, R_OK, mode_words(R_OK), {}});
    }
    for (size_t i = 0; i < spec.interfaces.size(); ++i) {
        const auto& forwards = spec.interfaces[i].backend.port_forwards;
        for (size_t k = 0; k < forwards.size(); ++k)
            if (auto why = forward_problem(forwards[k], input.qemu); !why.empty())
                problems.push_back(
                    fmt::format("interfaces[{}].backend.portForwards[{}] ({} {}:{}): {}", i, k,
                                spec::to_string(forwards[k].protocol), forwards[k].host_address,
                                forwards[k].host_port, why));
    }
    auto socket = [&](const std::string& field, const std::string& path) {
        if (path.empty()) return;
        if (auto why = socket_place(path); !why.empty())
            problems.push_back({fmt::format("{}: {}: {}", field, path, why), field});
        else
            creates_in(field + " (its folder)", path);
    };
    socket("serial.socket", spec.serial.socket);
    socket("devices.guestAgent", spec.devices.guest_agent);
    socket("--qmp-socket", input.qmp_socket);
    for (size_t i = 0; i < spec.interfaces.size(); ++i)
        if (const auto& fd = spec.interfaces[i].backend.tap_fd)
            if (auto why = tap_fd_problem(*fd); !why.empty())
                problems.push_back(fmt::format("interfaces[{}].backend.fd ({}): {}", i,
                                               spec.interfaces[i].name, why));
    for (size_t i = 0; i < spec.interfaces.size(); ++i)
        if (spec.interfaces[i].backend.type == spec::BackendType::stream) {
            const std::string& path = spec.interfaces[i].backend.socket;
            std::error_code ec;
            if (!fs::exists(path, ec))
                problems.push_back(
                    {fmt::format(
                         "interfaces[{}].backend.socket: {}: no such socket (is passt running?)", i,
                         path),
                     fmt::format("interfaces[{}].backend.socket", i)});
            else  // connecting to a unix socket needs write permission on it
                needs.push_back({fmt::format("interfaces[{}].backend.socket", i), path, W_OK,
                                 mode_words(W_OK),
                                 fmt::format("interfaces[{}].backend.socket", i)});
        }
    if (!spec.serial.log.empty()) {
        std::error_code ec;
        if (!fs::is_directory(folder_of(spec.serial.log), ec))
            problems.push_back(
                {fmt::format("serial.log: {}: its folder does not exist", spec.serial.log),
                 "serial.log"});
        else if (input.serial_log_by_qshim)
            ;  // qshim opens it before QEMU starts, and says why it cannot
        else if (fs::exists(spec.serial.log, ec))
            needs.push_back({"serial.log", spec.serial.log, W_OK, mode_words(W_OK), "serial.log"});
        else
            creates_in("serial.log (its folder)", spec.serial.log);
    }
    // KVM: required with accel kvm; with auto, QEMU quietly falls back to TCG, ten times slower.
    const spec::Accel accel = input.accel.value_or(spec.machine.accel);
    std::optional<size_t> kvm_index;
    if (accel != spec::Accel::tcg) {
        kvm_index = needs.size();
        needs.push_back({"machine.accel", input.kvm, R_OK | W_OK, mode_words(R_OK | W_OK), {}});
    }
    if (int err = check_needs(needs, input.qemu, kvm_index, problems); err != 0) {
        std::string why = fmt::format("{}: not readable and writable by {}: {}", input.kvm,
                                      describe(input.qemu), std::strerror(err));
        if (accel == spec::Accel::kvm)
            problems.push_back("machine.accel kvm: " + why);
        else
            warnings.push_back("machine.accel auto: " + why + "; QEMU will use TCG");
    }
    if (problems.empty()) return {};
    return preflight_error(spec, problems);
}

std::string vhost_user_socket_problem(const std::string& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0)
        return "no such socket (is the vhost-user-blk server running?)";
    if (!S_ISSOCK(st.st_mode)) return "not a unix socket";
    return {};
}

std::string disk_file_problem(const spec::Disk& disk, const QemuIdentity& qemu) {
    if (auto why = file_state(disk.path); !why.empty()) return why;
    if (disk.cache == spec::DiskCache::none)
        if (auto why = direct_io_problem(disk.path); !why.empty()) return "cache none: " + why;
    int mode = disk.read_only || disk.ephemeral ? R_OK : R_OK | W_OK;
    auto result = access_as(qemu, {{disk.path, mode}});
    if (!result) return result.error().what();
    if (int err = (*result)[0]; err != 0)
        return fmt::format("not {} by {}: {}", mode_words(mode), describe(qemu),
                           std::strerror(err));
    return {};
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
