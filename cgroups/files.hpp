// Reading small kernel files (cgroupfs, sysfs, procfs) under an injectable root.
#pragma once

#include <optional>
#include <qshim/error.hpp>
#include <set>
#include <string>

namespace qshim::cgroups::detail {

// The whole file without its trailing newline; nullopt when it does not exist (an absent
// controller or a kernel without the file). Any other failure is an error naming the path.
Result<std::optional<std::string>> read_optional(const std::string& path);
// The same, but absence is an error too.
Result<std::string> read_required(const std::string& path);

// A CPU (or node) list file: nullopt when absent; garbage is an error naming the path.
Result<std::optional<std::set<unsigned>>> read_cpu_list(const std::string& path);

// A number, or "max" (nullopt). Garbage: an error naming the path.
Result<std::optional<uint64_t>> parse_limit(const std::string& text, const std::string& path);

}  // namespace qshim::cgroups::detail
