// CPU lists: "0-3,8,10-11" <-> a set.
#include "common/cpu_list.hpp"

#include <charconv>

namespace qshim::detail {

namespace {

constexpr unsigned max_cpu = 1u << 16;

std::optional<unsigned> number(std::string_view text) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value >= max_cpu)
        return std::nullopt;
    return value;
}

}  // namespace

std::optional<std::set<unsigned>> parse_cpu_list(std::string_view text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
    std::set<unsigned> cpus;
    if (text.empty()) return cpus;  // an empty cpuset is valid (a cgroup not yet configured)
    while (true) {
        size_t comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        size_t dash = item.find('-');
        auto first = number(item.substr(0, dash));
        auto last = dash == std::string_view::npos ? first : number(item.substr(dash + 1));
        if (!first || !last || *last < *first) return std::nullopt;
        for (unsigned c = *first; c <= *last; ++c) cpus.insert(c);
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return cpus;
}

std::string to_cpu_list(const std::set<unsigned>& cpus) {
    std::string out;
    for (auto it = cpus.begin(); it != cpus.end();) {
        unsigned first = *it, last = *it;
        for (++it; it != cpus.end() && *it == last + 1; ++it) last = *it;
        if (!out.empty()) out += ',';
        out += std::to_string(first);
        if (last != first) out += '-' + std::to_string(last);
    }
    return out;
}

}  // namespace qshim::detail
