// Parsers and checks for the value types a spec holds: names, sizes, MACs, serials.
#pragma once

#include <optional>
#include <qshim/spec.hpp>
#include <string>
#include <string_view>

namespace qshim::spec::detail {

bool is_dns_label(std::string_view s);
std::optional<MacAddress> parse_mac(std::string_view s);
// "512Mi", "2Gi", "1048576": bytes, or nullopt.
std::optional<uint64_t> parse_quantity(std::string_view s);
// Characters QEMU and the guest accept in a disk serial without surprises.
bool is_safe_serial(std::string_view s);
// 8-4-4-4-12 lower-case hex digits.
bool is_uuid(std::string_view s);
// QEMU -cpu model names; no ',' so a model cannot smuggle in CPU flags.
bool is_cpu_model(std::string_view s);
bool is_versioned_q35(std::string_view s);
bool is_ifname(std::string_view s);
// Dotted-quad IPv4, each part 0-255 without leading zeros.
bool is_ipv4(std::string_view s);

}  // namespace qshim::spec::detail
