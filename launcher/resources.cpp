// plan_resources(): the pod's CPUs and memory for a VM, from a model measured on QEMU 7.2.
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <qshim/resources.hpp>

namespace qshim::launcher {

namespace {

constexpr uint64_t MiB = 1ull << 20;

// The model (docs/plan.md): peak resident memory (VmHWM) of QEMU 7.2 minus guest RAM, with all
// RAM preallocated, measured on five shapes (1-4 vCPUs, 256 MiB-2 GiB, 1-17 devices, 0-12
// hotplug ports) by tests/integration/test_plan.py, several runs each; every term rounded up so
// the plan covers the highest run. The runs were under TCG: the translation cache is a term of
// its own (tcg_translation_cache_bytes: what it held at boot), absent with accel: kvm.
constexpr uint64_t qemu_base = 56 * MiB;  // QEMU's code, libraries, machine, firmware
constexpr uint64_t per_vcpu = 10 * MiB;   // stack, per-vCPU state; 4 vCPUs on 2 CPUs vary most
// A virtio function or SCSI disk, its queues: 0.6 MiB measured per disk at boot (16 disks against
// 1), 1.6 MiB for plain QEMU; 3 MiB had the 16-disk shape 20% above its peak.
constexpr uint64_t per_device = 2 * MiB;
constexpr uint64_t per_hotplug_port = 2 * MiB;  // a free port and the device it may get
constexpr uint64_t per_iothread = 2 * MiB;      // measured 1.3 MiB
// qshim itself: 5.2-5.6 MiB peak while supervising with the API served; more with API clients
// and event streams.
constexpr uint64_t qshim_own = 12 * MiB;
// The spread between runs of one shape: up to 35 MiB for 4 vCPUs under TCG, while the guest
// finds its devices; the terms above already cover most of it.
constexpr uint64_t margin = 8 * MiB;

uint64_t round_up_mib(uint64_t bytes) { return (bytes + MiB - 1) / MiB * MiB; }

std::string mib(uint64_t bytes) { return fmt::format("{} MiB", bytes / MiB); }

// Kubernetes quantities: the largest binary unit that divides the value.
std::string quantity(uint64_t bytes) {
    if (bytes % (1ull << 30) == 0) return fmt::format("{}Gi", bytes >> 30);
    if (bytes % MiB == 0) return fmt::format("{}Mi", bytes / MiB);
    return fmt::format("{}Ki", (bytes + 1023) / 1024);
}

Result<uint64_t> file_size(const std::string& path, const char* field) {
    if (path.empty()) return uint64_t{0};
    struct stat st {};
    if (stat(path.c_str(), &st) != 0)
        return make_error(Errc::io,
                          fmt::format("{} {}: {} (planning elsewhere? give --boot-size)", field,
                                      path, std::strerror(errno)),
                          "planning the VM's resources");
    return static_cast<uint64_t>(st.st_size);
}

}  // namespace

uint64_t memlock_needed(const spec::VmSpec& spec) {
    if (spec.host_devices.empty()) return 0;
    return spec.memory.size_bytes + (1ull << 30);
}

Result<ResourcePlan> plan_resources(const spec::VmSpec& spec, const topology::Topology& topology,
                                    const PlanInputs& inputs) {
    uint64_t boot_files = 0;
    if (inputs.boot_files_bytes) {
        boot_files = *inputs.boot_files_bytes;
    } else {
        auto kernel = file_size(spec.boot.kernel, "boot.kernel");
        if (!kernel) return std::move(kernel).error();
        auto initrd = file_size(spec.boot.initrd, "boot.initrd");
        if (!initrd) return std::move(initrd).error();
        boot_files = *kernel + *initrd;
    }

    ResourcePlan p;
    const unsigned vcpus = spec.cpu.count();
    p.dedicated = spec.cpu.dedicated;
    p.cpus = vcpus + (spec.cpu.isolate_emulator_thread ? 1 : 0);
    p.guest_ram_bytes = spec.memory.size_bytes;
    p.hugepage_size = spec.memory.hugepage_bytes;
    if (p.hugepage_size) p.hugepages_bytes = spec.memory.size_bytes;
    p.memlock_bytes = memlock_needed(spec);

    // Every device: PCI functions and SCSI disks alike; the root ports that hold them are in
    // the base (a VM's fixed devices sit on ports that do not hotplug).
    const auto devices = static_cast<unsigned>(topology.devices.size());
    const unsigned to_come = spec.hotplug.disks + spec.hotplug.interfaces;
    auto add = [&p](std::string name, uint64_t bytes, std::string why) {
        if (bytes == 0) return;
        p.overhead.push_back({std::move(name), bytes, std::move(why)});
        p.overhead_bytes += bytes;
    };
    add("qemu", qemu_base, "QEMU's own memory: code, libraries, machine and firmware tables");
    // accel auto may end up on TCG (no /dev/kvm for QEMU's uid): planned as TCG.
    if (spec.machine.accel != spec::Accel::kvm)
        add("tcg", tcg_translation_cache_bytes,
            "TCG's translation cache at boot (accel tcg or auto; accel: kvm needs none)");
    add("vcpus", per_vcpu * vcpus, fmt::format("{} x {} vCPUs", mib(per_vcpu), vcpus));
    add("devices", per_device * devices, fmt::format("{} x {} devices", mib(per_device), devices));
    add("hotplug", per_hotplug_port * to_come,
        fmt::format("{} x {} hotplug ports and the devices to come", mib(per_hotplug_port),
                    to_come));
    add("iothreads", per_iothread * spec.iothreads,
        fmt::format("{} x {} IOThreads", mib(per_iothread), spec.iothreads));
    add("bootFiles", round_up_mib(boot_files), "QEMU keeps a copy of boot.kernel and boot.initrd");
    // The kernel charges the pod for the page tables that map guest RAM: 8 bytes per 4 KiB page.
    if (!p.hugepage_size)
        add("pageTables", round_up_mib(spec.memory.size_bytes / 512),
            "guest RAM / 512, the page tables mapping it");
    add("qshim", qshim_own, "qshim itself");
    add("margin", margin, "run-to-run spread of the peak");
    p.memory_bytes = (p.hugepage_size ? 0 : p.guest_ram_bytes) + p.overhead_bytes;
    return p;
}

std::string to_text(const ResourcePlan& p, const spec::VmSpec& spec) {
    std::string out = fmt::format("VM {}: {} vCPUs, {} guest RAM{}\n", spec.name, spec.cpu.count(),
                                  mib(p.guest_ram_bytes), p.hugepage_size ? " in huge pages" : "");
    out += fmt::format("  cpu:     {}{}\n", p.cpus,
                       p.dedicated ? " (dedicated: requests = limits, Guaranteed QoS)" : "");
    out += fmt::format("  memory:  {} ({} overhead{})\n", mib(p.memory_bytes),
                       mib(p.overhead_bytes), p.hugepage_size ? "" : " + guest RAM");
    for (const auto& t : p.overhead)
        out += fmt::format("    {:<11}{:>8}  {}\n", t.name, mib(t.bytes), t.why);
    if (p.hugepage_size)
        out += fmt::format("  hugepages-{}: {}\n", quantity(p.hugepage_size),
                           quantity(p.hugepages_bytes));
    out += p.memlock_bytes
               ? fmt::format("  memlock: {} (RLIMIT_MEMLOCK, for VFIO)\n", mib(p.memlock_bytes))
               : "  memlock: the default (no VFIO device)\n";
    return out;
}

std::string to_json(const ResourcePlan& p) {
    nlohmann::ordered_json j;
    j["cpus"] = p.cpus;
    j["dedicated"] = p.dedicated;
    j["memoryBytes"] = p.memory_bytes;
    j["guestRamBytes"] = p.guest_ram_bytes;
    j["overheadBytes"] = p.overhead_bytes;
    j["overhead"] = nlohmann::ordered_json::array();
    for (const auto& t : p.overhead)
        j["overhead"].push_back({{"name", t.name}, {"bytes", t.bytes}, {"why", t.why}});
    j["hugepageSize"] = p.hugepage_size;
    j["hugepagesBytes"] = p.hugepages_bytes;
    j["memlockBytes"] = p.memlock_bytes;
    return j.dump(2) + "\n";
}

std::string to_k8s(const ResourcePlan& p) {
    // Limits equal requests for memory: the plan is what the VM needs, and a pod above its
    // request is the first one the kubelet evicts. CPUs: whole and equal for dedicated ones (the
    // static CPU manager's condition); otherwise a request, and no limit that would throttle
    // the vCPUs.
    std::string memory = quantity(round_up_mib(p.memory_bytes));
    std::string requests = fmt::format("    cpu: \"{}\"\n    memory: {}\n", p.cpus, memory);
    std::string limits = p.dedicated
                             ? fmt::format("    cpu: \"{}\"\n    memory: {}\n", p.cpus, memory)
                             : fmt::format("    memory: {}\n", memory);
    if (p.hugepage_size) {
        std::string huge = fmt::format("    hugepages-{}: {}\n", quantity(p.hugepage_size),
                                       quantity(p.hugepages_bytes));
        requests += huge;
        limits += huge;
    }
    return "resources:\n  requests:\n" + requests + "  limits:\n" + limits;
}

}  // namespace qshim::launcher
