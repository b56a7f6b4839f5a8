// The VM spec (schema v1): what a user declares, loaded from YAML or JSON and validated.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <set>
#include <string>
#include <vector>

namespace qshim::spec {

// A guest-visible PCI address DDDD:BB:SS.F.
struct PciAddress {
    uint16_t domain = 0;
    uint8_t bus = 0;
    uint8_t slot = 0;
    uint8_t function = 0;

    friend bool operator==(const PciAddress&, const PciAddress&) = default;
    friend auto operator<=>(const PciAddress&, const PciAddress&) = default;
};

QSHIM_API std::string to_string(const PciAddress& a);
// A size as the spec writes one ("512Mi", "4Gi", "1048576"): bytes, or nullopt.
QSHIM_API std::optional<uint64_t> parse_size(std::string_view text);
QSHIM_API std::optional<PciAddress> parse_pci_address(std::string_view text);

using MacAddress = std::array<uint8_t, 6>;
QSHIM_API std::string to_string(const MacAddress& mac);

enum class Accel { automatic, kvm, tcg };
enum class DiskBus { virtio, scsi, sata };
enum class DiskFormat { raw, qcow2 };
enum class DiskDevice { disk, cdrom };
// The host page cache and the guest's view of the disk's write cache, as libvirt names the modes.
enum class DiskCache { none, writethrough, writeback };
enum class NicModel { virtio, e1000e, e1000 };
enum class BackendType { user, tap, stream, passt };
enum class SeccompMode { enforce, kill, log, off };
enum class FirmwareType { bios, uefi };
enum class Protocol { tcp, udp };
// How topology v1 lays out root ports (docs/topology.md): a fixed region per device class, or
// libvirt's q35 numbering, one port per device from slot 01, for VMs that keep libvirt's
// addresses (`qshim convert --pin-from`).
enum class PciLayout { regions, libvirt };

QSHIM_API const char* to_string(Accel v);
QSHIM_API const char* to_string(DiskBus v);
QSHIM_API const char* to_string(DiskFormat v);
QSHIM_API const char* to_string(DiskDevice v);
QSHIM_API const char* to_string(DiskCache v);
QSHIM_API const char* to_string(NicModel v);
QSHIM_API const char* to_string(BackendType v);
QSHIM_API const char* to_string(SeccompMode v);
QSHIM_API const char* to_string(FirmwareType v);
QSHIM_API const char* to_string(Protocol v);
QSHIM_API const char* to_string(PciLayout v);

struct Machine {
    std::string type = "q35";  // q35, or a versioned pc-q35-X.Y
    Accel accel = Accel::automatic;
    int topology_version = 1;
    PciLayout layout = PciLayout::regions;
};

// Host CPU or NUMA node numbers, written as a kernel CPU list ("0-3,8").
using HostSet = std::set<unsigned>;

// cpu.pinning: host CPUs chosen by hand, for local use (a pod uses cpu.dedicated instead).
struct CpuPinning {
    std::vector<unsigned> vcpus;  // the host CPU of vCPU 0, 1, ...; one each, all different
    HostSet emulator;             // QEMU's other threads; empty: the vCPUs' CPUs
    HostSet iothreads;            // every IOThread; empty: the emulator's CPUs
};

struct Cpu {
    unsigned sockets = 1;
    unsigned cores = 1;
    unsigned threads = 1;
    std::string model = "qemu64";
    // One host CPU of the pod's cpuset for each vCPU, nothing else on it (docs/placement.md).
    bool dedicated = false;
    // With dedicated: one more CPU for QEMU's other threads, off the vCPUs' CPUs.
    bool isolate_emulator_thread = false;
    std::optional<CpuPinning> pinning;
    unsigned count() const { return sockets * cores * threads; }
    bool pinned() const { return dedicated || pinning.has_value(); }
};

struct Memory {
    uint64_t size_bytes = 512ull << 20;
    std::string size_text = "512Mi";  // as written, for --resolve
    // Back guest RAM with huge pages of this size (2Mi or 1Gi); 0: normal pages.
    uint64_t hugepage_bytes = 0;
    // Touch all guest RAM before the guest runs, so the pod's peak is reached (and an OOM
    // happens) at start rather than hours later.
    bool prealloc = false;
    // Guest RAM a shared memfd (share=on) even without a vhost-user device in the spec, so that
    // vhost-user disks can be hot-plugged: their server maps guest RAM.
    bool shared = false;
};

// One guest NUMA node.
struct NumaNode {
    HostSet vcpus;  // guest vCPU indices
    uint64_t memory_bytes = 0;
    std::string memory_text;
    // Host nodes its memory is bound to; unset: not bound.
    std::optional<HostSet> host_nodes;
};

struct Numa {
    // guestNodes: auto: one guest node per host node of the pinned vCPUs, resolved at launch
    // (launcher::plan_placement); `nodes` is then empty until resolved.
    bool automatic = false;
    std::vector<NumaNode> nodes;
    bool enabled() const { return automatic || !nodes.empty(); }
};

// What the guest boots through: SeaBIOS, or OVMF (UEFI) with a variable store of its own.
struct Firmware {
    FirmwareType type = FirmwareType::bios;
    bool secure_boot = false;  // OVMF's secure-boot build with Microsoft's keys, and SMM
    // The SMBIOS system UUID (lower-case 8-4-4-4-12 hex) and serial number the guest reads
    // (/sys/class/dmi/id/product_uuid, product_serial); empty: QEMU's (an all-zero UUID).
    std::string uuid;
    std::string serial;
};

struct Boot {
    std::string kernel;  // resolved absolute path; empty = firmware boot
    std::string initrd;
    std::string cmdline;
    std::string kernel_as_written;
    std::string initrd_as_written;
};

struct Disk {
    std::string name;
    std::string path;             // resolved absolute path
    std::string path_as_written;  // for --resolve and error messages
    DiskFormat format = DiskFormat::raw;
    DiskBus bus = DiskBus::virtio;
    DiskDevice device = DiskDevice::disk;
    bool read_only = false;
    std::string serial;  // defaults to name
    std::optional<unsigned> boot_order;
    std::optional<PciAddress> pci_address;
    // A scsi disk's LUN on the virtio-scsi controller (target 0). Unset: the lowest one no other
    // scsi disk takes, in list order (docs/topology.md).
    std::optional<unsigned> lun;
    std::optional<unsigned> sata_port;  // sata disks: the AHCI port (0-5); unset: list order
    // Unset: QEMU's default, which is writeback.
    std::optional<DiskCache> cache;
    // The IOThread (0 .. iothreads-1) that runs this disk's I/O: virtio disks, and the SCSI
    // controller of scsi disks. Unset: QEMU's main loop.
    std::optional<unsigned> iothread;
    // Opened read-only under a qcow2 overlay in the state directory that is deleted when the VM
    // ends: the guest's writes never reach `path` (KubeVirt's containerDisk).
    bool ephemeral = false;
    // Non-zero: a blank disk of this many bytes, a qcow2 qshim makes in the state directory at
    // each start and deletes when the VM ends (KubeVirt's emptyDisk); `path` is then empty and
    // `format` qcow2.
    uint64_t capacity_bytes = 0;
    std::string capacity_text;  // as written
    bool blank() const { return capacity_bytes != 0; }
    // Non-empty: an ISO 9660 image of this folder's files, which qshim makes in the state
    // directory at each start and deletes when the VM ends (KubeVirt's configMap, secret,
    // serviceAccount and downwardAPI disks); `path` empty, `format` raw. Read-only by default,
    // except a sata disk (QEMU's ide-hd cannot be), whose writes go to this run's copy.
    std::string folder, folder_as_written;
    std::string volume_label;  // that image's volume id; empty: cfgdata, as KubeVirt's
    bool from_folder() const { return !folder.empty(); }
    // A disk QEMU does not open itself, served over vhost-user-blk (vhost-user-blk-pci; the guest
    // sees a virtio disk): by an external server listening at `vhost_user_socket` (backend type
    // vhostUser; `path` is then empty), or by a qemu-storage-daemon that qshim runs to export
    // `path` (storage_daemon). Either way guest RAM becomes shared memory, and the serial is the
    // server's to answer (`serial` is then empty).
    std::string vhost_user_socket;  // resolved
    std::string vhost_user_socket_as_written;
    bool storage_daemon = false;
    bool vhost_user() const { return !vhost_user_socket.empty() || storage_daemon; }
    // A cdrom drive with no disc in it (no `path`): media can be inserted while the VM runs.
    bool no_medium() const { return device == DiskDevice::cdrom && path.empty() && !from_folder(); }
};
// LUNs of the virtio-scsi controller qshim lays out (docs/topology.md).
inline constexpr unsigned max_scsi_luns = 256;
// q35's built-in AHCI controller (00:1f.2) has six ports.
inline constexpr unsigned max_sata_ports = 6;

// A host port of a user network forwarded into the guest (QEMU's hostfwd).
struct PortForward {
    Protocol protocol = Protocol::tcp;
    std::string host_address = "127.0.0.1";  // an IPv4 address; 0.0.0.0: every address
    uint16_t host_port = 0;
    uint16_t guest_port = 0;
};

struct Backend {
    BackendType type = BackendType::user;
    std::string tap_name;       // tap: host interface name
    std::optional<int> tap_fd;  // tap: an fd inherited by qshim
    std::string socket;         // stream: a passt-style unix socket (resolved)
    std::string socket_as_written;
    std::vector<PortForward> port_forwards;  // user, passt
    bool restricted = false;                 // user: the guest reaches nothing but its forwards
};

struct Interface {
    std::string name;
    NicModel model = NicModel::virtio;
    MacAddress mac{};
    bool mac_explicit = false;
    Backend backend;
    std::optional<unsigned> boot_order;
    std::optional<PciAddress> pci_address;
};

struct HostDevice {
    std::string name;
    PciAddress host_address;
    std::optional<PciAddress> pci_address;
};

// A host folder shared with the guest over virtio-fs (vhost-user-fs-pci), served by a virtiofsd
// qshim runs (docs/helpers.md). The guest mounts it by its tag: mount -t virtiofs TAG /mnt.
struct Filesystem {
    std::string name;
    std::string path;  // resolved absolute path of a folder
    std::string path_as_written;
    std::string tag;  // defaults to the name; at most 36 bytes (QEMU's limit)
    bool read_only = false;
};
// The longest tag QEMU's vhost-user-fs-pci takes.
inline constexpr std::size_t max_filesystem_tag = 36;

// A place in a spec file: 1-based line and column.
struct SourcePosition {
    int line = 0;
    int column = 0;
};

struct Hotplug {
    unsigned disks = 8;  // generous by default: "no more PCI slots" is the classic complaint
    unsigned interfaces = 4;
    // A virtio-scsi controller even while no scsi disk is in the spec, so scsi disks (LUNs) can
    // be hot-plugged. Any scsi disk brings the controller anyway.
    bool scsi = false;
};

// Pins for the built-in PCI devices; only the libvirt layout takes them (the regions layout
// gives each a fixed place).
struct BuiltinAddresses {
    std::optional<PciAddress> rng, balloon, scsi, virtio_serial, cloud_init;
    bool any() const { return rng || balloon || scsi || virtio_serial || cloud_init; }
};

struct Devices {
    bool balloon = false;
    bool rng = true;          // a guest without entropy boots slowly
    std::string guest_agent;  // unix socket path for the guest agent channel; empty = none
    std::string guest_agent_as_written;
    BuiltinAddresses pci_addresses;
};

struct Serial {
    std::string log;  // resolved paths; empty = none
    std::string socket;
    std::string log_as_written;
    std::string socket_as_written;
};

// One file of a NoCloud seed: inline text, or read from a file when the spec was loaded.
struct SeedFile {
    std::string text;             // the content; empty with `present` false: not given
    std::string file_as_written;  // the *File field as written, when the text came from one
    bool present = false;
};

// Which cloud-init datasource the seed is for: NoCloud (an ISO labelled "cidata" with user-data,
// meta-data, network-config) or ConfigDrive (OpenStack's "config-2" layout).
enum class Datasource { no_cloud, config_drive };
QSHIM_API const char* to_string(Datasource v);

// cloudInit: the seed image qshim writes at each start.
struct CloudInit {
    Datasource datasource = Datasource::no_cloud;
    SeedFile user_data;
    SeedFile meta_data;  // a YAML map; qshim adds instance-id and local-hostname when absent
    // A YAML map: cloud-init's network config for NoCloud, OpenStack's network_data (JSON) for
    // ConfigDrive.
    SeedFile network_config;
};

// Most text a seed may hold, all files together: cloud-init reads it into memory at boot.
inline constexpr size_t max_seed_bytes = 1 << 20;

struct Lifecycle {
    unsigned grace_period_seconds = 30;
};

// The ids QEMU runs as. Never root: a guest that takes QEMU over must not own the host.
struct RunAs {
    uint32_t uid = 107;  // the qemu user of Debian and KubeVirt's virt-launcher
    uint32_t gid = 107;
    friend bool operator==(const RunAs&, const RunAs&) = default;
};

// How QEMU is confined (docs/security.md).
struct Security {
    // Unset: 107:107 when qshim runs as root, qshim's own ids otherwise.
    std::optional<RunAs> run_as;
    // What qshim's seccomp deny-list does to a denied call: enforce (fails with EPERM), kill (the
    // process dies), log (allowed and logged by the kernel: for finding what a workload needs),
    // off (no filter of qshim's; QEMU's own -sandbox stays on).
    SeccompMode seccomp = SeccompMode::enforce;
};

struct VmSpec {
    std::string name;
    Machine machine;
    Cpu cpu;
    Memory memory;
    Numa numa;
    unsigned iothreads = 0;  // IOThreads QEMU creates, named io0, io1, ...
    Firmware firmware;
    Boot boot;
    std::optional<CloudInit> cloud_init;
    std::vector<Disk> disks;
    std::vector<Interface> interfaces;
    std::vector<HostDevice> host_devices;
    std::vector<Filesystem> filesystems;
    Hotplug hotplug;
    Devices devices;
    Serial serial;
    Lifecycle lifecycle;
    Security security;

    std::string source_file;  // the file it was loaded from, for messages
    std::string base_dir;     // relative paths are resolved against this folder
    // Where each field naming a host file was written ("disks[0].path" -> its position in
    // source_file), so a problem found when the VM starts (a missing image) points at it too.
    std::map<std::string, SourcePosition> positions;
    // For a converted KubeVirt manifest: (spec path prefix, manifest path) pairs, so a problem
    // found later (by the topology) names the manifest's field (source_path()).
    std::vector<std::pair<std::string, std::string>> origins;
};

// Largest spec file accepted; a VM spec is a few KiB, so more is a mistake or an attack.
inline constexpr size_t max_spec_bytes = 1 << 20;

enum class Format { automatic, yaml, json };

// Where a KubeVirt manifest's volumes are inside the VM's pod: KubeVirt's virt-launcher paths
// (docs/kubevirt.md). Each can be moved, to run a manifest outside a pod.
struct VolumeRoots {
    // containerDisk: the image of volume N (its index in spec.volumes) is disk_N.img here.
    std::string container_disks = "/var/run/kubevirt/container-disks";
    // persistentVolumeClaim, dataVolume: a filesystem volume's image is VOLUME/disk.img here.
    std::string vmi_disks = "/var/run/kubevirt-private/vmi-disks";
    // persistentVolumeClaim, dataVolume: a block volume is the device VOLUME here (taken when it
    // exists).
    std::string block_devices = "/dev";
    // cloudInitNoCloud's secretRef and networkDataSecretRef: the secret's keys are files in
    // VOLUME/ here.
    std::string secrets = "/var/run/kubevirt-private/secret";
    // firmware.kernelBoot: the kernel and initrd, by their file names.
    std::string kernel_boot = "/var/run/kubevirt/container-disks/kernel-boot";
    // Shared with the guest over virtio-fs (devices.filesystems): a configMap's files are in
    // VOLUME/ here, a downwardAPI volume's too; the serviceAccount's token is this folder.
    std::string config_maps = "/var/run/kubevirt-private/config-map";
    std::string downward_api = "/var/run/kubevirt-private/downwardapi";
    std::string service_account = "/var/run/secrets/kubernetes.io/serviceaccount";
};

struct LoadOptions {
    Format format = Format::automatic;  // automatic: by extension, then by content
    VolumeRoots volume_roots;           // for KubeVirt manifests
    // A KubeVirt manifest's devices take the places this libvirt domain XML (`virsh dumpxml`)
    // gives them: machine.layout libvirt, every address pinned (docs/kubevirt.md).
    std::string pin_from;
    // Where loading a manifest says what is not an error but the user should know: what of the
    // pin_from domain the VM cannot keep (a USB controller, ...), a disk KubeVirt's defaults add
    // for a volume no disk names; may be nullptr.
    std::vector<std::string>* notes = nullptr;
};

// Whether spec text is a KubeVirt manifest (it has apiVersion or kind) rather than a qshim spec.
// load_spec and parse_spec take both; a manifest is converted to a spec as docs/kubevirt.md says.
QSHIM_API bool is_kubevirt_manifest(std::string_view text);

// The field of the file the spec came from that `spec_path` ("disks[0].pciAddress") was written
// as: the same path for a spec, the manifest's ("spec.domain.devices.disks[2].pciAddress") for a
// converted KubeVirt manifest.
QSHIM_API std::string source_path(const VmSpec& spec, const std::string& spec_path);

// Reads and validates a spec file. On failure the Error (code invalid_spec or io) lists every
// problem found in Error::diagnostics.
QSHIM_API Result<VmSpec> load_spec(const std::string& path, const LoadOptions& options = {});

// Parses spec text as if read from `filename` (used in messages and to resolve relative paths).
QSHIM_API Result<VmSpec> parse_spec(std::string_view text, const std::string& filename,
                                    const LoadOptions& options = {});

// One disk or interface on its own, as the REST API receives it: a JSON object with the fields of
// a disks[] (interfaces[]) entry, checked by the same rules. Relative paths resolve against the
// VM's spec folder; the default MAC derives from the VM's name. Uniqueness against the VM's other
// devices is the caller's to check.
QSHIM_API Result<Disk> parse_disk(std::string_view json, const VmSpec& vm);
QSHIM_API Result<Interface> parse_interface(std::string_view json, const VmSpec& vm);

// The deterministic default MAC for an interface: 52:54:00 plus 24 bits of FNV-1a over
// "<vm name>/<interface name>". Part of the topology contract: it never changes.
QSHIM_API MacAddress default_mac(std::string_view vm_name, std::string_view interface_name);

// The spec as YAML or JSON, every field written out (defaults made explicit). Paths appear as
// written, relative ones still relative to the spec's folder. A spec built in code may hold
// strings that are not valid UTF-8, which neither format can carry: Errc::invalid_spec.
QSHIM_API Result<std::string> to_yaml(const VmSpec& spec);
QSHIM_API Result<std::string> to_json(const VmSpec& spec);

}  // namespace qshim::spec
