// Value parsers for spec fields, and the stable formatting of PCI and MAC addresses.
#include "spec/values.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "spec/decoder.hpp"

namespace qshim::spec {

namespace {

// Hand-written rather than std::regex: compiling libstdc++'s regexes cost more instructions than
// the rest of loading a spec (bench/instructions.py), and its matcher recurses per character.

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Not std::isalnum: that one follows the locale an embedding program may have set.
bool ascii_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Exactly `digits` hex digits at text[at...]; their value, or -1.
long hex_field(std::string_view text, size_t at, size_t digits) {
    if (at + digits > text.size()) return -1;
    long v = 0;
    for (size_t i = at; i < at + digits; ++i) {
        int d = hex_digit(text[i]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

}  // namespace

std::string to_string(const PciAddress& a) {
    return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", a.domain, a.bus, a.slot, a.function);
}

std::optional<PciAddress> parse_pci_address(std::string_view text) {
    // DDDD:BB:SS.F, hex, function 0-7.
    if (text.size() != 12 || text[4] != ':' || text[7] != ':' || text[10] != '.')
        return std::nullopt;
    long domain = hex_field(text, 0, 4), bus = hex_field(text, 5, 2), slot = hex_field(text, 8, 2);
    if (domain < 0 || bus < 0 || slot < 0 || text[11] < '0' || text[11] > '7') return std::nullopt;
    PciAddress a;
    a.domain = static_cast<uint16_t>(domain);
    a.bus = static_cast<uint8_t>(bus);
    a.slot = static_cast<uint8_t>(slot);
    a.function = static_cast<uint8_t>(text[11] - '0');
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
const char* to_string(DiskCache v) {
    return v == DiskCache::none           ? "none"
           : v == DiskCache::writethrough ? "writethrough"
                                          : "writeback";
}
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
        case BackendType::passt:
            return "passt";
    }
    return "?";
}

const char* to_string(SeccompMode v) {
    switch (v) {
        case SeccompMode::enforce:
            return "enforce";
        case SeccompMode::kill:
            return "kill";
        case SeccompMode::log:
            return "log";
        case SeccompMode::off:
            return "off";
    }
    return "?";
}

const char* to_string(FirmwareType v) { return v == FirmwareType::uefi ? "uefi" : "bios"; }
const char* to_string(Protocol v) { return v == Protocol::udp ? "udp" : "tcp"; }
const char* to_string(PciLayout v) { return v == PciLayout::libvirt ? "libvirt" : "regions"; }
const char* to_string(Datasource v) {
    return v == Datasource::config_drive ? "configDrive" : "noCloud";
}

namespace detail {

bool is_uuid(std::string_view s) {
    if (s.size() != 36) return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        const char c = s[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

bool is_dns_label(std::string_view s) {
    // RFC 1123 label: lower-case letters, digits and '-', not at either end, 1 to 63 long.
    if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

std::optional<MacAddress> parse_mac(std::string_view s) {
    // XX:XX:XX:XX:XX:XX, hex.
    if (s.size() != 17) return std::nullopt;
    MacAddress mac;
    for (size_t i = 0; i < 6; ++i) {
        long v = hex_field(s, i * 3, 2);
        if (v < 0 || (i < 5 && s[i * 3 + 2] != ':')) return std::nullopt;
        mac[i] = static_cast<uint8_t>(v);
    }
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
    // 1 to 20 of [A-Za-z0-9._+:-]: what QEMU and guests show unmangled as a disk serial.
    if (s.empty() || s.size() > 20) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == ':' || c == '-'))
            return false;
    return true;
}

bool is_cpu_model(std::string_view s) {
    // [A-Za-z0-9][A-Za-z0-9._-]{0,63}
    if (s.empty() || s.size() > 64 || !ascii_alnum(s[0])) return false;
    for (char c : s)
        if (!ascii_alnum(c) && c != '.' && c != '_' && c != '-') return false;
    return true;
}

bool is_versioned_q35(std::string_view s) {
    // pc-q35-N.N with one or two digits each
    constexpr std::string_view prefix = "pc-q35-";
    if (s.substr(0, prefix.size()) != prefix) return false;
    s.remove_prefix(prefix.size());
    auto dot = s.find('.');
    if (dot == std::string_view::npos) return false;
    auto digits = [](std::string_view d) {
        return !d.empty() && d.size() <= 2 &&
               std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    return digits(s.substr(0, dot)) && digits(s.substr(dot + 1));
}

bool is_ifname(std::string_view s) {
    // [A-Za-z0-9_.-]{1,15}: IFNAMSIZ - 1
    if (s.empty() || s.size() > 15) return false;
    for (char c : s)
        if (!ascii_alnum(c) && c != '_' && c != '.' && c != '-') return false;
    return true;
}

bool is_ipv4(std::string_view s) {
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        size_t start = i;
        unsigned value = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3)
            value = value * 10 + static_cast<unsigned>(s[i++] - '0');
        size_t len = i - start;
        if (len == 0 || value > 255 || (len > 1 && s[start] == '0')) return false;
        ++parts;
        if (parts < 4 && (i >= s.size() || s[i++] != '.')) return false;
    }
    return i == s.size();
}

}  // namespace detail

std::optional<uint64_t> parse_size(std::string_view text) { return detail::parse_quantity(text); }

}  // namespace qshim::spec
