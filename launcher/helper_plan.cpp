// The helpers of a spec and their argv.
#include "launcher/helper_plan.hpp"

#include <fmt/format.h>

#include <qshim/launcher.hpp>

#include "launcher/device_json.hpp"
#include "launcher/state_dir.hpp"

namespace qshim::launcher::detail {

namespace {

HelperSpec storage_daemon(const spec::VmSpec& spec, const spec::Disk& disk,
                          const std::string& state_dir, const HelperBinaries& binaries) {
    const std::string socket = storage_daemon_socket(state_dir, disk.name);
    HelperSpec h;
    h.name = "qsd-" + disk.name;
    h.device = fmt::format("disks[{}]", disk.name);
    h.dir = storage_daemon_dir(state_dir, disk.name);
    h.socket = socket;
    h.package = "qemu-system-common";
    h.argv = {binaries.storage_daemon};
    // The same file and format nodes QEMU would open, so the format is never probed.
    for (const auto& node : disk_blockdevs(disk)) {
        h.argv.push_back("--blockdev");
        h.argv.push_back(node.dump());
    }
    Json exported{{"type", "vhost-user-blk"},
                  {"id", "export"},
                  {"node-name", format_node_name(disk.name)},
                  {"addr", Json{{"type", "unix"}, {"path", socket}}},
                  {"writable", !disk.read_only},
                  {"num-queues", vhost_user_queues(spec)}};
    h.argv.push_back("--export");
    h.argv.push_back(exported.dump());
    return h;
}

// Debian 12's virtiofsd is the C one of QEMU 7.2: it has no unsandboxed mode, so it runs as root
// of a user namespace of its own (docs/helpers.md) and chroots into the folder (the other mode,
// new mount/pid/net namespaces with /proc mounted, fails in containers whose /proc is masked).
HelperSpec virtiofsd(const spec::Filesystem& fs, const std::string& state_dir,
                     const HelperBinaries& binaries) {
    const std::string socket = virtiofsd_socket(state_dir, fs.name);
    HelperSpec h;
    h.name = "virtiofsd-" + fs.name;
    h.device = fmt::format("filesystems[{}]", fs.name);
    h.dir = virtiofsd_dir(state_dir, fs.name);
    h.socket = socket;
    h.package = "qemu-system-common";
    // --fd: it would otherwise take a lock in /run/virtiofsd, which its uid cannot write.
    // --rlimit-nofile=0: its limit is the one qshim set (raising past the hard limit would fail).
    h.argv = {
        binaries.virtiofsd, "--fd=3",           "-o", "source=" + fuse_option_escape(fs.path), "-o",
        "sandbox=chroot",   "--rlimit-nofile=0"};
    h.socket_from_qshim = true;
    h.ready_line = "Waiting for vhost-user socket connection";
    h.own_namespaces = true;
    if (fs.read_only) h.read_only_bind = fs.path;
    return h;
}

// passt isolates itself (user, mount, pid namespaces; its own seccomp allow-list) but stays in
// the pod's network namespace, which it is there to serve. Foreground, quiet (it would otherwise
// report every line to a syslog a pod does not have), explicit about every port it forwards.
HelperSpec passt(const spec::Interface& nic, const std::string& state_dir,
                 const HelperBinaries& binaries) {
    const std::string socket = passt_socket(state_dir, nic.name);
    HelperSpec h;
    h.name = "passt-" + nic.name;
    h.device = fmt::format("interfaces[{}]", nic.name);
    h.dir = passt_dir(state_dir, nic.name);
    h.socket = socket;
    h.package = "passt";
    h.argv = {binaries.passt, "--foreground", "--quiet", "--socket", socket};
    bool tcp = false, udp = false;
    for (const auto& f : nic.backend.port_forwards) {
        const bool is_tcp = f.protocol == spec::Protocol::tcp;
        (is_tcp ? tcp : udp) = true;
        h.argv.push_back(is_tcp ? "--tcp-ports" : "--udp-ports");
        // ADDR/PORT:GUESTPORT binds PORT on ADDR only; without ADDR, on every address.
        h.argv.push_back(f.host_address == "0.0.0.0"
                             ? fmt::format("{}:{}", f.host_port, f.guest_port)
                             : fmt::format("{}/{}:{}", f.host_address, f.host_port, f.guest_port));
    }
    // Nothing forwarded that the spec does not list.
    if (!tcp) h.argv.insert(h.argv.end(), {"--tcp-ports", "none"});
    if (!udp) h.argv.insert(h.argv.end(), {"--udp-ports", "none"});
    h.sandboxes_itself = true;
    return h;
}

}  // namespace

std::string fuse_option_escape(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == ',' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

Result<std::vector<HelperSpec>> plan_helpers(const spec::VmSpec& spec, const std::string& state_dir,
                                             const HelperBinaries& binaries) {
    std::vector<HelperSpec> helpers;
    for (const auto& d : spec.disks)
        if (d.storage_daemon) helpers.push_back(storage_daemon(spec, d, state_dir, binaries));
    for (const auto& fs : spec.filesystems) helpers.push_back(virtiofsd(fs, state_dir, binaries));
    for (const auto& nic : spec.interfaces)
        if (nic.backend.type == spec::BackendType::passt)
            helpers.push_back(passt(nic, state_dir, binaries));
    for (const auto& h : helpers)
        if (h.socket.size() > max_socket_path)
            return make_error(
                Errc::launch,
                fmt::format("{} ({}): its socket {} would be {} bytes long, past the "
                            "{} a unix socket can have; choose a shorter --state-dir",
                            h.device, h.name, h.socket, h.socket.size(), max_socket_path),
                "planning the helper processes of VM " + spec.name);
    return helpers;
}

}  // namespace qshim::launcher::detail
