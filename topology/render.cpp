// The stable JSON/YAML renderings of a Topology (the shape is part of docs/topology.md).
#include <nlohmann/json.hpp>
#include <qshim/topology.hpp>

#include "common/json_yaml.hpp"

namespace qshim::topology {

namespace {

using Json = nlohmann::ordered_json;  // insertion order: the output never depends on a hash

Json controller_json(const Controller& c) {
    Json j;
    j["id"] = c.id;
    j["model"] = c.model;
    j["region"] = c.region;
    j["address"] = spec::to_string(c.address);
    j["parent"] = c.parent;
    j["bus"] = c.bus;
    if (c.model == "pcie-root-port") {
        j["chassis"] = c.chassis;
        j["port"] = c.port;
        j["hotplug"] = c.hotplug;
        j["multifunction"] = c.multifunction;
        if (c.bus_reserve) j["busReserve"] = c.bus_reserve;
    }
    return j;
}

Json device_json(const Device& d) {
    Json j;
    j["name"] = d.name;
    j["kind"] = to_string(d.kind);
    j["driver"] = d.driver;
    j["id"] = d.id;
    j["address"] = spec::to_string(d.address);
    j["parent"] = d.parent;
    if (d.slot) j["slot"] = d.slot;
    if (d.unit) j["unit"] = *d.unit;
    if (!d.serial.empty()) j["serial"] = d.serial;
    if (!d.mac.empty()) j["mac"] = d.mac;
    return j;
}

Json topology_json(const Topology& t) {
    Json j;
    j["topologyVersion"] = t.version;
    j["machine"] = t.machine;
    j["controllers"] = Json::array();
    for (const auto& c : t.controllers) j["controllers"].push_back(controller_json(c));
    j["devices"] = Json::array();
    for (const auto& d : t.devices) j["devices"].push_back(device_json(d));
    j["hotplugPorts"] = Json::array();
    for (const auto& h : t.hotplug_ports)
        j["hotplugPorts"].push_back(Json{{"class", h.cls},
                                         {"id", h.id},
                                         {"address", spec::to_string(h.address)},
                                         {"portAddress", spec::to_string(h.port_address)}});
    return j;
}

}  // namespace

Result<std::string> to_json(const Topology& t) {
    auto text = detail::dump_json(topology_json(t), 2, "the topology");
    if (!text) return std::move(text).error();
    return *text + "\n";
}

Result<std::string> to_json(const Device& d) {
    return detail::dump_json(device_json(d), -1,
                             "device " + detail::dump_lossy(nlohmann::json(d.name)));
}

Result<std::string> to_yaml(const Topology& t) {
    return detail::json_to_yaml(topology_json(t), "the topology");
}

}  // namespace qshim::topology
