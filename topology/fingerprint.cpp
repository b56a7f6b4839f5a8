// The guest-ABI fingerprint a migration's two sides compare (docs/migration.md).
#include <boost/uuid/name_generator_sha1.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <map>
#include <qshim/fingerprint.hpp>

#include "common/cpu_list.hpp"

namespace qshim::topology {

namespace {

// Part of the contract: a new qshim must compute the same digest for the same guest, so that
// an old and a new qshim can migrate to each other. Never change it.
const boost::uuids::uuid fingerprint_namespace = {{0x6b, 0x1e, 0x50, 0x43, 0x9d, 0x0c, 0x4a, 0x7e,
                                                   0x8f, 0x35, 0x51, 0x0b, 0xc2, 0x74, 0x90, 0x1d}};

std::string list_name(DeviceKind kind) {
    switch (kind) {
        case DeviceKind::disk:
            return "disks";
        case DeviceKind::interface:
            return "interfaces";
        case DeviceKind::hostdev:
            return "hostDevices";
        case DeviceKind::filesystem:
            return "filesystems";
        case DeviceKind::controller:
        case DeviceKind::system:
            break;
    }
    return "devices";
}

}  // namespace

std::string fingerprint_digest(const std::vector<std::pair<std::string, std::string>>& facts) {
    std::string text;
    for (const auto& [key, value] : facts) text += key + '\t' + value + '\n';
    boost::uuids::name_generator_sha1 generate(fingerprint_namespace);
    return boost::uuids::to_string(generate(text.data(), text.size()));
}

Fingerprint fingerprint(const spec::VmSpec& spec, const Topology& topology) {
    Fingerprint fp;
    auto fact = [&fp](std::string key, std::string value) {
        fp.facts.emplace_back(std::move(key), std::move(value));
    };
    fact("topologyVersion", std::to_string(topology.version));
    fact("machine", topology.machine);
    fact("cpu.model", spec.cpu.model);
    fact("cpu.sockets", std::to_string(spec.cpu.sockets));
    fact("cpu.cores", std::to_string(spec.cpu.cores));
    fact("cpu.threads", std::to_string(spec.cpu.threads));
    fact("memory.size", std::to_string(spec.memory.size_bytes));
    // The guest reads them (licensing, cloud-init's instance id on some datasources).
    if (!spec.firmware.uuid.empty()) fact("firmware.uuid", spec.firmware.uuid);
    if (!spec.firmware.serial.empty()) fact("firmware.serial", spec.firmware.serial);
    // numa auto is resolved at launch; the live spec a target is given holds the nodes.
    if (spec.numa.automatic && spec.numa.nodes.empty()) fact("numa", "auto");
    for (size_t i = 0; i < spec.numa.nodes.size(); ++i) {
        const auto& node = spec.numa.nodes[i];
        std::string key = "numa.guestNodes[" + std::to_string(i) + "]";
        fact(key + ".vcpus", qshim::detail::to_cpu_list(node.vcpus));
        fact(key + ".memory", std::to_string(node.memory_bytes));
    }
    for (const auto& c : topology.controllers) {
        std::string key = "controllers[" + c.id + "]";
        fact(key, spec::to_string(c.address));
        fact(key + ".model", c.model);
        fact(key + ".bus", std::to_string(c.bus));
        if (c.chassis) fact(key + ".chassis", std::to_string(c.chassis));
        if (c.port) fact(key + ".port", std::to_string(c.port));
    }
    for (const auto& d : topology.devices) {
        std::string key = list_name(d.kind) + "[" + d.name + "]";
        fact(key, spec::to_string(d.address));
        fact(key + ".model", d.driver);
        if (d.unit) fact(key + ".unit", std::to_string(*d.unit));
        if (!d.serial.empty()) fact(key + ".serial", d.serial);
        if (!d.mac.empty()) fact(key + ".mac", d.mac);
    }
    fp.digest = fingerprint_digest(fp.facts);
    return fp;
}

std::vector<std::string> compare(const Fingerprint& here, const Fingerprint& there) {
    std::map<std::string, std::string> theirs(there.facts.begin(), there.facts.end());
    std::vector<std::string> differences;
    for (const auto& [key, value] : here.facts) {
        auto it = theirs.find(key);
        if (it == theirs.end())
            differences.push_back(key + ": " + value + " here, absent there");
        else if (it->second != value)
            differences.push_back(key + ": " + value + " here, " + it->second + " there");
        if (it != theirs.end()) theirs.erase(it);
    }
    // What only the other side has, in its order.
    for (const auto& [key, value] : there.facts)
        if (theirs.count(key)) differences.push_back(key + ": absent here, " + value + " there");
    return differences;
}

}  // namespace qshim::topology
