// Value parsers for spec fields, and the stable formatting of PCI and MAC addresses.
#include "spec/values.hpp"

#include <fmt/format.h>

#include <regex>

#include "spec/decoder.hpp"

namespace qshim::spec {

std::string to_string(const PciAddress& a) {
    return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", a.domain, a.bus, a.slot, a.function);
}

std::optional<PciAddress> parse_pci_address(std::string_view text) {
    static const std::regex re("([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\\.([0-7])");
    std::cmatch m;
    if (!std::regex_match(text.begin(), text.end(), m, re)) return std::nullopt;
    PciAddress a;
    a.domain = static_cast<uint16_t>(std::stoul(m[1].str(), nullptr, 16));
    a.bus = static_cast<uint8_t>(std::stoul(m[2].str(), nullptr, 16));
    a.slot = static_cast<uint8_t>(std::stoul(m[3].str(), nullptr, 16));
    a.function = static_cast<uint8_t>(std::stoul(m[4].str(), nullptr, 16));
    if (a.slot > 0x1f) return std::nullopt;
    return a;
}

std::string to_string(const MacAddress& mac) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3],
                       mac[4], mac[5]);
}

MacAddress default_mac(std::string_view vm_name, std::string_view interface_name) {
    // FNV-1a (32-bit) is tiny, fully specified and platform independent: the contract needs a
    // function whose output can never change, not a cryptographic one.
    uint32_t h = 2166136261u;
    auto mix = [&h](std::string_view s) {
        for (unsigned char c : s) {
            h ^= c;
            h *= 16777619u;
        }
    };
    mix(vm_name);
    mix("/");
    mix(interface_name);
    return {0x52,
            0x54,
            0x00,
            static_cast<uint8_t>(h >> 16),
            static_cast<uint8_t>(h >> 8),
            static_cast<uint8_t>(h)};
}

const char* to_string(Accel v) {
    switch (v) {
        case Accel::automatic:
            return "auto";
        case Accel::kvm:
            return "kvm";
        case Accel::tcg:
            return "tcg";
    }
    return "?";
}
const char* to_string(DiskBus v) {
    switch (v) {
        case DiskBus::virtio:
            return "virtio";
        case DiskBus::scsi:
            return "scsi";
        case DiskBus::sata:
            return "sata";
    }
    return "?";
}
const char* to_string(DiskFormat v) { return v == DiskFormat::raw ? "raw" : "qcow2"; }
const char* to_string(DiskDevice v) { return v == DiskDevice::disk ? "disk" : "cdrom"; }
const char* to_string(NicModel v) {
    switch (v) {
        case NicModel::virtio:
            return "virtio";
        case NicModel::e1000e:
            return "e1000e";
        case NicModel::e1000:
            return "e1000";
    }
    return "?";
}
const char* to_string(BackendType v) {
    switch (v) {
        case BackendType::user:
            return "user";
        case BackendType::tap:
            return "tap";
        case BackendType::stream:
            return "stream";
    }
    return "?";
}

namespace detail {

bool is_dns_label(std::string_view s) {
    static const std::regex re("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
    return s.size() <= 63 && std::regex_match(s.begin(), s.end(), re);
}

std::optional<MacAddress> parse_mac(std::string_view s) {
    static const std::regex re(
        "([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):"
        "([0-9a-fA-F]{2}):([0-9a-fA-F]{2})");
    std::cmatch m;
    if (!std::regex_match(s.begin(), s.end(), m, re)) return std::nullopt;
    MacAddress mac;
    for (size_t i = 0; i < 6; ++i)
        mac[i] = static_cast<uint8_t>(std::stoul(m[i + 1].str(), nullptr, 16));
    return mac;
}

std::optional<uint64_t> parse_quantity(std::string_view s) {
    static const std::pair<std::string_view, unsigned> units[] = {
        {"Ki", 10}, {"Mi", 20}, {"Gi", 30}, {"Ti", 40}};
    unsigned shift = 0;
    for (const auto& [suffix, bits] : units) {
        if (s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix) {
            s.remove_suffix(suffix.size());
            shift = bits;
            break;
        }
    }
    auto v = parse_uint(s);
    if (!v || (shift && *v > (UINT64_MAX >> shift))) return std::nullopt;
    return *v << shift;
}

bool is_safe_serial(std::string_view s) {
    static const std::regex re("[A-Za-z0-9._+:-]{1,20}");
    return std::regex_match(s.begin(), s.end(), re);
}

bool is_cpu_model(std::string_view s) {
    static const std::regex re("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
    return std::regex_match(s.begin(), s.end(), re);
}

bool is_versioned_q35(std::string_view s) {
    static const std::regex re("pc-q35-[0-9]{1,2}\\.[0-9]{1,2}");
    return std::regex_match(s.begin(), s.end(), re);
}

bool is_ifname(std::string_view s) {
    static const std::regex re("[A-Za-z0-9_.-]{1,15}");  // IFNAMSIZ - 1
    return std::regex_match(s.begin(), s.end(), re);
}

}  // namespace detail
}  // namespace qshim::spec
