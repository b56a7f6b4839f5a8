// read_cloud_init(): the NoCloud seed's files, checked where the spec names them.
#include "spec/cloud_init.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/unique_fd.hpp"

namespace qshim::spec::detail {

namespace {

namespace fs = std::filesystem;
using qshim::detail::UniqueFd;

// One seed file: `key` inline or `key`File. Returns the node the text came from, for later
// checks of its content.
const Node* read_seed_file(Diagnostics& diags, Fields& f, std::string_view key,
                           const std::string& base_dir, SeedFile& out) {
    std::string file_key = std::string(key) + "File";
    const Node* inline_node = f.get(key);
    const Node* file_node = f.get(file_key);
    if (inline_node && file_node) {
        diags.add(*file_node, f.path_of(file_key),
                  fmt::format("give {} or {}, not both", key, file_key));
        return nullptr;
    }
    if (inline_node) {
        if (!f.string(key, out.text)) return nullptr;
        out.present = true;
        return inline_node;
    }
    if (!file_node || !f.string(file_key, out.file_as_written)) return nullptr;
    const std::string& written = out.file_as_written;
    if (written.empty() || written.find('\0') != std::string::npos) {
        diags.add(*file_node, f.path_of(file_key),
                  written.empty() ? "must not be empty" : "must not contain a NUL byte");
        return nullptr;
    }
    fs::path p(written);
    std::string path = (p.is_absolute() ? p : fs::path(base_dir) / p).lexically_normal().string();
    // O_NONBLOCK: a file that would block (/proc/kmsg, a FIFO) fails instead of hanging the
    // loader.
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    struct stat st {};
    if (!fd || fstat(fd.get(), &st) != 0) {
        diags.add(
            *file_node, f.path_of(file_key),
            fmt::format("{}: {}", path, errno == ENOENT ? "no such file" : std::strerror(errno)));
        return nullptr;
    }
    if (!S_ISREG(st.st_mode)) {
        diags.add(*file_node, f.path_of(file_key), fmt::format("{}: not a regular file", path));
        return nullptr;
    }
    // One byte past the limit is enough to know it is too large.
    std::string text;
    char chunk[16 * 1024];
    while (text.size() <= max_seed_bytes) {
        ssize_t n = read(fd.get(), chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            diags.add(*file_node, f.path_of(file_key),
                      fmt::format("{}: cannot read it: {}", path, std::strerror(errno)));
            return nullptr;
        }
        if (n == 0) break;
        text.append(chunk, static_cast<size_t>(n));
    }
    out.text = std::move(text);
    out.present = true;
    return file_node;
}

}  // namespace

bool is_text(std::string_view text) {
    size_t i = 0;
    while (i < text.size()) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c == 0) return false;
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
        if (n == 0 || c > 0xf4 || i + n >= text.size()) return false;
        uint32_t cp = c & (0x3f >> n);
        for (size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(text[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        static constexpr uint32_t min_of[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_of[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n + 1;
    }
    return true;
}

CloudInit read_cloud_init(Diagnostics& diags, const Node& map, const std::string& base_dir) {
    Fields f(diags, map, "cloudInit");
    CloudInit c;
    f.choice("datasource", c.datasource,
             {{"noCloud", Datasource::no_cloud}, {"configDrive", Datasource::config_drive}});
    struct Entry {
        const char* key;
        SeedFile* file;
        bool yaml_map;  // cloud-init reads it as a YAML mapping
    };
    const Entry entries[] = {{"userData", &c.user_data, false},
                             {"metaData", &c.meta_data, true},
                             {"networkConfig", &c.network_config, true}};
    size_t total = 0;
    for (const auto& e : entries) {
        const Node* at = read_seed_file(diags, f, e.key, base_dir, *e.file);
        if (!at) continue;
        std::string path =
            at == map.find(e.key) ? f.path_of(e.key) : f.path_of(std::string(e.key) + "File");
        total += e.file->text.size();
        if (e.file->text.size() > max_seed_bytes) continue;  // reported with the total below
        if (!is_text(e.file->text)) {
            diags.add(*at, path,
                      "must be text (UTF-8 without NUL bytes); a seed holds no binaries");
            continue;
        }
        if (!e.yaml_map) continue;
        auto doc = parse_yaml_value(e.file->text, path);
        if (!doc)
            diags.add(*at, path, "is not YAML cloud-init can read: " + doc.error().message);
        else if (*doc && (*doc)->kind != Node::Kind::map && (*doc)->kind != Node::Kind::null)
            diags.add(*at, path, "must be a YAML map (key: value lines)");
    }
    if (total > max_seed_bytes)
        diags.add(map, "cloudInit",
                  fmt::format("the seed's files hold more than {} bytes; cloud-init seeds are "
                              "small (put large payloads on a disk)",
                              max_seed_bytes));
    f.finish();
    return c;
}

}  // namespace qshim::spec::detail
