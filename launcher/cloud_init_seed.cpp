// seed_files() and seed_image(): the cloud-init seed, for NoCloud or ConfigDrive.
#include "launcher/cloud_init_seed.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "launcher/iso_image.hpp"

namespace qshim::launcher::detail {

namespace {

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
    for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
    return h;
}

// Deterministic and the same on every host: a changed input gives another id.
std::string instance_id(const spec::CloudInit& c, std::string_view vm_name) {
    uint64_t h = 14695981039346656037ull;
    for (std::string_view part :
         {vm_name, std::string_view(c.user_data.text), std::string_view(c.meta_data.text),
          std::string_view(c.network_config.text)}) {
        h = fnv1a(h, part);
        h = fnv1a(h, std::string_view("\0", 1));  // "ab"+"c" and "a"+"bc" differ
    }
    return fmt::format("qshim-{}-{:016x}", vm_name, h);
}

// A YAML document as JSON: maps, lists, and every scalar as a string (cloud-init reads
// OpenStack's meta_data.json and network_data.json with JSON types, but the values it uses
// there are strings).
nlohmann::ordered_json to_json(const YAML::Node& n) {
    if (n.IsMap()) {
        nlohmann::ordered_json j = nlohmann::ordered_json::object();
        for (const auto& kv : n) j[kv.first.as<std::string>()] = to_json(kv.second);
        return j;
    }
    if (n.IsSequence()) {
        nlohmann::ordered_json j = nlohmann::ordered_json::array();
        for (const auto& item : n) j.push_back(to_json(item));
        return j;
    }
    if (n.IsScalar()) return n.as<std::string>();
    return nullptr;
}

Result<YAML::Node> yaml_map(const spec::SeedFile& f, const char* what) {
    YAML::Node doc;
    try {
        if (f.present) doc = YAML::Load(f.text);
    } catch (const YAML::Exception& e) {
        return make_error(Errc::invalid_spec, fmt::format("{} is not YAML: {}", what, e.what()),
                          "writing the cloud-init seed");
    }
    if (doc.IsNull()) doc = YAML::Node(YAML::NodeType::Map);
    if (!doc.IsMap())
        return make_error(Errc::invalid_spec, fmt::format("{} must be a YAML map", what),
                          "writing the cloud-init seed");
    return doc;
}

// OpenStack's config drive, version 2, as cloud-init's ConfigDrive datasource reads it: the
// instance id is "uuid" and the hostname "hostname" in meta_data.json.
Result<std::map<std::string, std::string>> config_drive_files(const spec::CloudInit& c,
                                                              YAML::Node meta) {
    const std::string dir = "openstack/latest/";
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    j["uuid"] = meta["instance-id"].as<std::string>();
    j["hostname"] = meta["local-hostname"].as<std::string>();
    for (const auto& kv : meta) {
        auto key = kv.first.as<std::string>();
        if (key != "instance-id" && key != "local-hostname") j[key] = to_json(kv.second);
    }
    std::map<std::string, std::string> files;
    files[dir + "meta_data.json"] = j.dump() + "\n";
    files[dir + "user_data"] = c.user_data.text;
    if (c.network_config.present) {
        auto network = yaml_map(c.network_config, "network config");
        if (!network) return std::move(network).error();
        files[dir + "network_data.json"] = to_json(*network).dump() + "\n";
    }
    return files;
}

}  // namespace

const char* seed_label(const spec::CloudInit& c) {
    return c.datasource == spec::Datasource::config_drive ? "config-2" : "cidata";
}

Result<std::map<std::string, std::string>> seed_files(const spec::CloudInit& c,
                                                      std::string_view vm_name) {
    auto loaded = yaml_map(c.meta_data, "meta-data");
    if (!loaded) return std::move(loaded).error();
    YAML::Node meta = *loaded;
    if (!meta["instance-id"]) meta["instance-id"] = instance_id(c, vm_name);
    if (!meta["local-hostname"]) meta["local-hostname"] = std::string(vm_name);
    if (c.datasource == spec::Datasource::config_drive) return config_drive_files(c, meta);
    YAML::Emitter out;
    out << meta;
    std::map<std::string, std::string> files;
    files["meta-data"] = std::string(out.c_str()) + "\n";
    files["user-data"] = c.user_data.text;
    if (c.network_config.present) files["network-config"] = c.network_config.text;
    return files;
}

Result<std::string> seed_image(const spec::CloudInit& c, std::string_view vm_name) {
    auto files = seed_files(c, vm_name);
    if (!files) return std::move(files).error();
    return iso_image(seed_label(c), *files);
}

}  // namespace qshim::launcher::detail
