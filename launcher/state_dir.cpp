// prepare_state(): the state directory's files, made before QEMU starts.
#include "launcher/state_dir.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/unique_fd.hpp"
#include "launcher/cloud_init_seed.hpp"
#include "launcher/iso_image.hpp"
#include "launcher/process.hpp"

extern char** environ;

namespace qshim::launcher::detail {

namespace {

namespace fs = std::filesystem;
using qshim::detail::UniqueFd;

const char* const context = "preparing the VM's state directory";

Error fail(std::string message) { return make_error(Errc::launch, std::move(message), context); }

// Gives a file qshim made to QEMU's ids, when QEMU runs as others. Through an fd opened without
// following symlinks: never chown what a path might have been swapped for.
Result<void> hand_over(const std::string& path, const QemuIdentity& qemu) {
    if (!qemu.other_than_qshim) return {};
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd || fchown(fd.get(), qemu.ids.uid, qemu.ids.gid) != 0)
        return fail(fmt::format("{}: cannot give it to {}: {}", path, describe(qemu),
                                std::strerror(errno)));
    return {};
}

// Writes `bytes` to `path` through a temporary file and a rename, so a reader (or a crash)
// never sees half a file.
Result<void> write_file(const std::string& path, std::string_view bytes, mode_t mode) {
    std::string tmp = path + ".tmp";
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!fd) return fail(fmt::format("{}: cannot create it: {}", tmp, std::strerror(errno)));
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = write(fd.get(), bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            unlink(tmp.c_str());
            return fail(fmt::format("{}: write failed: {}", tmp, std::strerror(err)));
        }
        done += static_cast<size_t>(n);
    }
    if (fsync(fd.get()) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        unlink(tmp.c_str());
        return fail(fmt::format("{}: cannot write it: {}", path, std::strerror(err)));
    }
    return {};
}

// Runs a tool to its end; its stderr becomes the error.
Result<void> run_tool(const std::vector<std::string>& argv, const std::string& what) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) return fail(what + ": pipe2: " + std::strerror(errno));
    UniqueFd read_end(pipefd[0]), write_end(pipefd[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    write_end.reset();
    if (rc != 0)
        return fail(fmt::format("{}: cannot run {}: {}{}", what, argv[0], std::strerror(rc),
                                rc == ENOENT ? " (install Debian's qemu-utils)" : ""));
    std::string output;
    char buffer[4096];
    for (;;) {
        ssize_t n = read(read_end.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (output.size() < 4096) output.append(buffer, static_cast<size_t>(n));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
    return fail(fmt::format("{}: {} {}: {}", what, argv[0], describe_wait_status(status),
                            output.empty() ? "(no message)" : output));
}

Result<void> make_dir(const std::string& dir, const QemuIdentity& qemu) {
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return {};
    if (fs::exists(dir, ec)) return fail(fmt::format("{}: exists and is not a folder", dir));
    // Missing parents too (the default, SPEC's folder/.qshim/NAME, starts without .qshim).
    auto parent = fs::path(dir).parent_path();
    if (!parent.empty() && !fs::is_directory(parent, ec) && !fs::create_directories(parent, ec))
        return fail(fmt::format("{}: cannot create it: {}", parent.string(), ec.message()));
    // qshim's, not QEMU's: QEMU opens the files qshim made (given to its uid) and creates
    // nothing here, so a QEMU taken over cannot plant a symlink where qshim (perhaps root)
    // writes next. 0711 lets QEMU's other uid reach its files; 0700 when it is qshim's own. The
    // seed may hold credentials: its file is 0600.
    if (mkdir(dir.c_str(), qemu.other_than_qshim ? 0711 : 0700) != 0 && errno != EEXIST)
        return fail(fmt::format("{}: cannot create it: {}", dir, std::strerror(errno)));
    return {};
}

Result<void> make_efi_vars(const spec::VmSpec& spec, const StateInput& in) {
    const bool secure = spec.firmware.secure_boot;
    std::string vars = efi_vars_path(in.dir, secure);
    std::error_code ec;
    if (fs::exists(vars, ec)) return {};  // kept across runs: the guest's boot entries live here
    auto files = ovmf_files(secure, in.firmware_dir);
    std::ifstream from(files.vars_template, std::ios::binary);
    if (!from) return fail(fmt::format("firmware: {}: cannot read it", files.vars_template));
    std::string bytes((std::istreambuf_iterator<char>(from)), std::istreambuf_iterator<char>());
    if (auto ok = write_file(vars, bytes, 0600); !ok) return ok;
    return hand_over(vars, in.qemu);
}

}  // namespace

OvmfFiles ovmf_files(bool secure_boot, const std::string& firmware_dir) {
    // The secure-boot code refuses to run without SMM; its template has Microsoft's keys
    // enrolled, so the Debian shim and kernels signed through it boot.
    if (secure_boot)
        return {firmware_dir + "/OVMF_CODE_4M.secboot.fd", firmware_dir + "/OVMF_VARS_4M.ms.fd"};
    return {firmware_dir + "/OVMF_CODE_4M.fd", firmware_dir + "/OVMF_VARS_4M.fd"};
}

std::string efi_vars_path(const std::string& state_dir, bool secure_boot) {
    // One store per variant: a store without keys would leave secure boot off.
    return state_dir + (secure_boot ? "/efi-vars-secboot.fd" : "/efi-vars.fd");
}
std::string seed_path(const std::string& state_dir) { return state_dir + "/cidata.iso"; }
std::string overlay_path(const std::string& state_dir, std::string_view disk_name) {
    return fmt::format("{}/{}.overlay.qcow2", state_dir, disk_name);
}

std::string blank_path(const std::string& state_dir, std::string_view disk_name) {
    return fmt::format("{}/{}.blank.qcow2", state_dir, disk_name);
}

std::string folder_image_path(const std::string& state_dir, std::string_view disk_name) {
    return fmt::format("{}/{}.folder.iso", state_dir, disk_name);
}

Result<std::map<std::string, std::string>> folder_files(const std::string& folder) {
    // The whole image is made in memory; a config volume is a few KiB (Kubernetes caps a
    // configMap at 1 MiB), so more than this is a mistake.
    constexpr uintmax_t max_bytes = 64ull << 20;
    const std::string context = "reading the folder disk " + folder;
    std::map<std::string, std::string> files;
    uintmax_t total = 0;
    std::error_code ec;
    fs::recursive_directory_iterator it(folder, fs::directory_options::none, ec), end;
    if (ec) return make_error(Errc::io, fmt::format("{}: {}", folder, ec.message()), context);
    for (; it != end; it.increment(ec)) {
        if (ec) return make_error(Errc::io, fmt::format("{}: {}", folder, ec.message()), context);
        const fs::path& p = it->path();
        if (p.filename().string().starts_with("..")) {
            if (it->is_directory(ec)) it.disable_recursion_pending();
            continue;
        }
        if (it.depth() >= 8) it.disable_recursion_pending();  // a link loop, or not a config
        if (!it->is_regular_file(ec)) continue;               // folders, sockets, devices
        const uintmax_t size = it->file_size(ec);
        if (ec || (total += size) > max_bytes)
            return make_error(
                Errc::io,
                ec ? fmt::format("{}: {}", p.string(), ec.message())
                   : fmt::format("{} holds more than {} MiB", folder, max_bytes >> 20),
                context);
        std::ifstream in(p, std::ios::binary);
        std::stringstream bytes;
        bytes << in.rdbuf();
        if (!in)
            return make_error(Errc::io, fmt::format("{}: cannot read it", p.string()), context);
        files[p.lexically_relative(folder).generic_string()] = bytes.str();
    }
    return files;
}

std::string storage_daemon_dir(const std::string& state_dir, std::string_view disk_name) {
    return fmt::format("{}/{}.qsd", state_dir, disk_name);
}

std::string storage_daemon_socket(const std::string& state_dir, std::string_view disk_name) {
    return storage_daemon_dir(state_dir, disk_name) + "/vhost-user-blk.sock";
}

std::string virtiofsd_dir(const std::string& state_dir, std::string_view filesystem_name) {
    return fmt::format("{}/{}.virtiofsd", state_dir, filesystem_name);
}

std::string virtiofsd_socket(const std::string& state_dir, std::string_view filesystem_name) {
    return virtiofsd_dir(state_dir, filesystem_name) + "/virtiofsd.sock";
}

std::string passt_dir(const std::string& state_dir, std::string_view interface_name) {
    return fmt::format("{}/{}.passt", state_dir, interface_name);
}

std::string passt_socket(const std::string& state_dir, std::string_view interface_name) {
    return passt_dir(state_dir, interface_name) + "/passt.sock";
}

RunFiles& RunFiles::operator=(RunFiles&& other) noexcept {
    if (this != &other) {
        remove();
        files_ = std::move(other.files_);
        other.files_.clear();
    }
    return *this;
}

void RunFiles::add(const std::string& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) files_.push_back({path, st.st_dev, st.st_ino});
}

void RunFiles::remove() {
    for (const auto& f : files_) {
        struct stat st {};
        if (lstat(f.path.c_str(), &st) == 0 && st.st_dev == f.dev && st.st_ino == f.ino)
            unlink(f.path.c_str());
    }
    files_.clear();
}

std::vector<std::string> RunFiles::paths() const {
    std::vector<std::string> out;
    for (const auto& f : files_) out.push_back(f.path);
    return out;
}

std::string unmigratable_disks(const spec::VmSpec& spec) {
    if (!spec.filesystems.empty())
        return fmt::format(
            "filesystems[0] ({}) is virtio-fs, which QEMU 7.2 cannot migrate "
            "(vhost-user-fs-pci is marked unmigratable)",
            spec.filesystems[0].name);
    for (size_t i = 0; i < spec.disks.size(); ++i)
        if (spec.disks[i].vhost_user())
            return fmt::format(
                "disks[{}] ({}) is served over vhost-user-blk: qshim does not live-migrate "
                "vhost-user devices yet (their server holds the image and its lock)",
                i, spec.disks[i].name);
    for (size_t i = 0; i < spec.disks.size(); ++i)
        if (spec.disks[i].ephemeral || spec.disks[i].blank())
            return fmt::format(
                "disks[{}] ({}) is {}: its {} holds the guest's writes on this host and does "
                "not migrate; a VM with ephemeral or blank disks cannot be live-migrated",
                i, spec.disks[i].name, spec.disks[i].blank() ? "blank" : "ephemeral",
                spec.disks[i].blank() ? "image" : "overlay");
    return {};
}

bool needs_state(const spec::VmSpec& spec) {
    if (spec.firmware.type == spec::FirmwareType::uefi || spec.cloud_init) return true;
    // Shared RAM is there for vhost-user disks hot-plugged later: their daemons' folders.
    if (spec.memory.shared) return true;
    for (const auto& d : spec.disks)
        if (d.ephemeral || d.blank() || d.storage_daemon || d.from_folder()) return true;
    for (const auto& i : spec.interfaces)
        if (i.backend.type == spec::BackendType::passt) return true;
    return !spec.filesystems.empty();
}

Result<RunFiles> prepare_state(const spec::VmSpec& spec, const StateInput& in) {
    if (!needs_state(spec)) return RunFiles{};
    // Sources first: a missing one makes nothing.
    if (spec.firmware.type == spec::FirmwareType::uefi) {
        auto files = ovmf_files(spec.firmware.secure_boot, in.firmware_dir);
        for (const auto& f : {files.code, files.vars_template})
            if (access(f.c_str(), R_OK) != 0)
                return fail(fmt::format("firmware.type uefi: {}: {} (install Debian's ovmf)", f,
                                        std::strerror(errno)));
    }
    for (size_t i = 0; i < spec.disks.size(); ++i) {
        const auto& d = spec.disks[i];
        if (!d.ephemeral) continue;
        std::error_code ec;
        if (!fs::is_regular_file(d.path, ec) && !fs::is_block_file(d.path, ec))
            return fail(fmt::format(
                "disks[{}] ({}): {}: {}; an ephemeral disk needs its image", i, d.name, d.path,
                fs::exists(d.path, ec) ? "not a file or block device" : "no such file"));
    }
    if (auto ok = make_dir(in.dir, in.qemu); !ok) return std::move(ok).error();
    if (spec.firmware.type == spec::FirmwareType::uefi)
        if (auto ok = make_efi_vars(spec, in); !ok) return std::move(ok).error();

    RunFiles run;
    if (spec.cloud_init) {
        auto image = seed_image(*spec.cloud_init, spec.name);
        if (!image) return std::move(image).error();
        std::string path = seed_path(in.dir);
        if (auto ok = write_file(path, *image, 0600); !ok) return std::move(ok).error();
        run.add(path);
        if (auto ok = hand_over(path, in.qemu); !ok) return std::move(ok).error();
    }
    for (size_t i = 0; i < spec.disks.size(); ++i) {
        const auto& d = spec.disks[i];
        if (!d.ephemeral) continue;
        std::string path = overlay_path(in.dir, d.name);
        unlink(path.c_str());  // a previous run killed before it could clean up
        // The backing format is written into the overlay, so nothing ever probes the image.
        auto ok = run_tool({in.qemu_img, "create", "-q", "-f", "qcow2", "-F",
                            spec::to_string(d.format), "-b", d.path, path},
                           fmt::format("disks[{}] ({}): creating its overlay {}", i, d.name, path));
        if (!ok) {
            unlink(path.c_str());  // whatever qemu-img left half made
            return std::move(ok).error();
        }
        run.add(path);
        if (auto handed = hand_over(path, in.qemu); !handed) return std::move(handed).error();
    }
    for (size_t i = 0; i < spec.disks.size(); ++i) {
        const auto& d = spec.disks[i];
        if (!d.from_folder()) continue;
        auto files = folder_files(d.folder);
        if (!files) return std::move(files).error();
        // Without a label, KubeVirt's: its config disks are "cfgdata" unless the volume says.
        auto image = iso_image(d.volume_label.empty() ? "cfgdata" : d.volume_label, *files);
        if (!image) return std::move(image).error();
        std::string path = folder_image_path(in.dir, d.name);
        // A secret's folder: the image is as private as the seed.
        if (auto ok = write_file(path, *image, 0600); !ok) return std::move(ok).error();
        run.add(path);
        if (auto handed = hand_over(path, in.qemu); !handed) return std::move(handed).error();
    }
    for (size_t i = 0; i < spec.disks.size(); ++i) {
        const auto& d = spec.disks[i];
        if (!d.blank()) continue;
        std::string path = blank_path(in.dir, d.name);
        unlink(path.c_str());  // a previous run's, killed before it could clean up
        auto ok = run_tool(
            {in.qemu_img, "create", "-q", "-f", "qcow2", path, std::to_string(d.capacity_bytes)},
            fmt::format("disks[{}] ({}): creating the blank disk {}", i, d.name, path));
        if (!ok) {
            unlink(path.c_str());
            return std::move(ok).error();
        }
        run.add(path);
        if (auto handed = hand_over(path, in.qemu); !handed) return std::move(handed).error();
    }
    return run;
}

}  // namespace qshim::launcher::detail
