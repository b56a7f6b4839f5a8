// The public face of the CPU list syntax (common/cpu_list.cpp), and cgroup mode names.
#include "common/cpu_list.hpp"

#include <qshim/cgroups.hpp>

namespace qshim::cgroups {

std::optional<CpuSet> parse_cpu_list(std::string_view text) {
    return qshim::detail::parse_cpu_list(text);
}

std::string to_cpu_list(const CpuSet& cpus) { return qshim::detail::to_cpu_list(cpus); }

const char* to_string(Mode mode) {
    switch (mode) {
        case Mode::v1:
            return "v1";
        case Mode::v2:
            return "v2";
        case Mode::hybrid:
            return "hybrid";
    }
    return "?";
}

}  // namespace qshim::cgroups
