// read_optional(), read_required(), read_cpu_list(), parse_limit(): the only file access of the
// module.
#include "cgroups/files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/cpu_list.hpp"
#include "common/unique_fd.hpp"

namespace qshim::cgroups::detail {

Result<std::optional<std::string>> read_optional(const std::string& path) {
    qshim::detail::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return std::optional<std::string>{};
        return make_error(Errc::io, fmt::format("{}: {}", path, std::strerror(errno)));
    }
    std::string text;
    char buffer[4096];
    while (true) {
        ssize_t n = read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error(Errc::io, fmt::format("{}: {}", path, std::strerror(errno)));
        if (n == 0) break;
        text.append(buffer, static_cast<size_t>(n));
        // These files are a line or a few KiB; a huge one is not the file we expect.
        if (text.size() > (1u << 20))
            return make_error(Errc::io, fmt::format("{}: larger than 1 MiB", path));
    }
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return std::optional<std::string>(std::move(text));
}

Result<std::string> read_required(const std::string& path) {
    auto text = read_optional(path);
    if (!text) return std::move(text).error();
    if (!*text) return make_error(Errc::io, fmt::format("{}: {}", path, std::strerror(ENOENT)));
    return std::move(**text);
}

Result<std::optional<std::set<unsigned>>> read_cpu_list(const std::string& path) {
    auto text = read_optional(path);
    if (!text) return std::move(text).error();
    if (!*text) return std::optional<std::set<unsigned>>{};
    auto set = qshim::detail::parse_cpu_list(**text);
    if (!set) return make_error(Errc::io, fmt::format("{}: not a CPU list: '{}'", path, **text));
    return set;
}

Result<std::optional<uint64_t>> parse_limit(const std::string& text, const std::string& path) {
    if (text == "max") return std::optional<uint64_t>{};
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        return make_error(Errc::io, fmt::format("{}: not a number or 'max': '{}'", path, text));
    return std::optional<uint64_t>(value);
}

}  // namespace qshim::cgroups::detail
