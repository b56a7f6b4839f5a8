// A VM's state directory: what it keeps across runs (the UEFI variable store) and what one run
// makes and removes (the cloud-init seed, ephemeral disks' overlays). docs/local.md.
#pragma once

#include <sys/types.h>

#include <map>
#include <qshim/error.hpp>
#include <qshim/spec.hpp>
#include <string>
#include <vector>

#include "launcher/access_check.hpp"

namespace qshim::launcher::detail {

// OVMF as Debian's ovmf package installs it: the 4 MiB builds (the 2 MiB ones hold too few
// variables for secure boot's keys).
struct OvmfFiles {
    std::string code;           // read-only firmware
    std::string vars_template;  // copied once into the state directory
};
OvmfFiles ovmf_files(bool secure_boot, const std::string& firmware_dir);

// Where each file lives in `state_dir`; the command line and the preparation both use these.
std::string efi_vars_path(const std::string& state_dir, bool secure_boot);
std::string seed_path(const std::string& state_dir);
std::string overlay_path(const std::string& state_dir, std::string_view disk_name);
std::string blank_path(const std::string& state_dir, std::string_view disk_name);
// A folder disk's ISO image, made at each start.
std::string folder_image_path(const std::string& state_dir, std::string_view disk_name);
// The files of a folder disk, by path within it, as iso_image() takes them: regular files,
// followed through symlinks, in sub-folders too; names starting with ".." are left out (the
// ..data links a Kubernetes volume mount keeps its versions behind).
Result<std::map<std::string, std::string>> folder_files(const std::string& folder);
// A storageDaemon disk's qemu-storage-daemon: its own folder (the helper's uid may create
// files there, not in the state directory), and its vhost-user-blk socket in it.
std::string storage_daemon_dir(const std::string& state_dir, std::string_view disk_name);
std::string storage_daemon_socket(const std::string& state_dir, std::string_view disk_name);
// A filesystem's virtiofsd: the same, its socket made by qshim in that folder.
std::string virtiofsd_dir(const std::string& state_dir, std::string_view filesystem_name);
std::string virtiofsd_socket(const std::string& state_dir, std::string_view filesystem_name);
// A passt NIC's passt: the same, its socket made by passt in that folder.
std::string passt_dir(const std::string& state_dir, std::string_view interface_name);
std::string passt_socket(const std::string& state_dir, std::string_view interface_name);

// The files one run made, removed when the VM ends (and by every failure before it runs). A
// file is removed only while it is still the one this run made (same device, inode and ctime):
// another run of the same spec (a migration target on this host) may have replaced it since.
class RunFiles {
  public:
    RunFiles() = default;
    RunFiles(RunFiles&& other) noexcept : files_(std::move(other.files_)) { other.files_.clear(); }
    RunFiles& operator=(RunFiles&& other) noexcept;
    RunFiles(const RunFiles&) = delete;
    RunFiles& operator=(const RunFiles&) = delete;
    ~RunFiles() { remove(); }

    // Records the file now at `path` (nothing when there is none).
    void add(const std::string& path);
    void remove();
    std::vector<std::string> paths() const;

  private:
    struct File {
        std::string path;
        dev_t dev;
        ino_t ino;
    };
    std::vector<File> files_;
};

// Why the spec's devices cannot move with a live migration (ephemeral and blank disks: their
// images stay on this host; vhost-user disks: not done yet; filesystems: QEMU cannot); empty when
// they can.
std::string unmigratable_disks(const spec::VmSpec& spec);

struct StateInput {
    std::string dir;           // the state directory; created (0700) when missing
    std::string firmware_dir;  // where OVMF's files are
    std::string qemu_img;      // the qemu-img binary that creates overlays
    QemuIdentity qemu;         // files are handed to QEMU's uid when it is another
};

// Makes what the spec needs before QEMU starts: the directory; with UEFI, the variable store
// (copied from OVMF's template once, then kept); with cloudInit, the seed image; for each
// ephemeral disk, its overlay (qemu-img, the backing format explicit); for each blank disk, an
// empty qcow2 of its capacity. Nothing is made when a
// source is missing (OVMF not installed, an ephemeral disk's image absent): Errc::launch naming
// the field and what to install. On any failure the run's files made so far are removed.
Result<RunFiles> prepare_state(const spec::VmSpec& spec, const StateInput& input);

// Whether the spec keeps anything in a state directory.
bool needs_state(const spec::VmSpec& spec);

}  // namespace qshim::launcher::detail
