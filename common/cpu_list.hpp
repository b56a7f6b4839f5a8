// The kernel's CPU list syntax ("0-3,8,10-11"), shared by the spec reader and cgroups/.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace qshim::detail {

// nullopt for anything that is not a list of numbers and ranges below 65536 (the kernel's
// NR_CPUS is at most 8192: larger numbers are garbage, not CPUs). Empty text: the empty set.
std::optional<std::set<unsigned>> parse_cpu_list(std::string_view text);
std::string to_cpu_list(const std::set<unsigned>& cpus);

}  // namespace qshim::detail
