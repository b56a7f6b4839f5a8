// iso_image(): small ISO 9660 images written with libisofs (Debian's libisofs6, which xorriso is
// built on). ISO 9660 rather than vfat for cloud-init seeds: it is the format cloud-init documents
// first and KubeVirt writes, read-only by nature, and a maintained library writes it for us.
#include "launcher/iso_image.hpp"

#include <fmt/format.h>
// The struct burn_source that libisofs hands out is declared by libburn, unless this asks
// libisofs for its own copy of the declaration (we read the image without libburn).
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>

#include <cstdlib>
#include <cstring>
#include <memory>

namespace qshim::launcher::detail {

namespace {

// Everything libisofs allocates, released however we leave.
struct IsoDeleter {
    void operator()(IsoImage* p) const { iso_image_unref(p); }
    void operator()(IsoWriteOpts* p) const { iso_write_opts_free(p); }
    void operator()(burn_source* p) const {
        p->free_data(p);
        std::free(p);
    }
};
template <typename T>
using IsoPtr = std::unique_ptr<T, IsoDeleter>;

Error iso_error(const char* step, int code) {
    const char* text = iso_error_to_msg(code);
    return make_error(Errc::io, fmt::format("{}: {}", step, text ? text : "unknown error"),
                      "writing an ISO image");
}

const time_t fixed_time = 946684800;  // 2000-01-01T00:00:00Z, every timestamp of the image

// libisofs keeps a process-wide message queue; it is set up once, and prints nothing itself
// (its errors come back as return codes, which we report). Its "now", used for new nodes, is
// fixed too: qshim is its only user in the process.
bool init_libisofs() {
    static const bool ok = [] {
        if (iso_init() < 0) return false;
        time_t now = fixed_time;
        iso_nowtime(&now, 1);
        char never[] = "NEVER";
        char tag[] = "libisofs: ";
        iso_set_msgs_severities(never, never, tag);
        return true;
    }();
    return ok;
}

// The folder that holds `path`'s file ("a/b/c": a/b), made as needed.
Result<IsoDir*> folder_for(IsoImage* image, const std::string& path) {
    IsoDir* dir = iso_image_get_root(image);
    size_t begin = 0;
    for (size_t slash; (slash = path.find('/', begin)) != std::string::npos; begin = slash + 1) {
        const std::string name = path.substr(begin, slash - begin);
        IsoNode* node = nullptr;
        if (iso_dir_get_node(dir, name.c_str(), &node) == 1) {
            if (iso_node_get_type(node) != LIBISO_DIR)
                return make_error(Errc::internal, fmt::format("{}: {} is a file", path, name),
                                  "writing an ISO image");
            dir = reinterpret_cast<IsoDir*>(node);
            continue;
        }
        IsoDir* made = nullptr;
        if (int r = iso_image_add_new_dir(image, dir, name.c_str(), &made); r < 0)
            return iso_error("iso_image_add_new_dir", r);
        dir = made;
    }
    return dir;
}

}  // namespace

Result<std::string> iso_image(std::string_view volume_id,
                              const std::map<std::string, std::string>& files) {
    if (!init_libisofs())
        return make_error(Errc::io, "libisofs failed to initialise", "writing an ISO image");
    const std::string id(volume_id);
    IsoImage* raw_image = nullptr;
    if (int r = iso_image_new(id.c_str(), &raw_image); r < 0) return iso_error("iso_image_new", r);
    IsoPtr<IsoImage> image(raw_image);
    iso_image_set_volume_id(image.get(), id.c_str());  // what cloud-init looks for
    for (const auto& [path, text] : files) {
        auto folder = folder_for(image.get(), path);
        if (!folder) return std::move(folder).error();
        const std::string name = path.substr(path.rfind('/') + 1);
        // A memory stream takes a malloc'd buffer and frees it.
        auto* buffer = static_cast<unsigned char*>(std::malloc(text.size() ? text.size() : 1));
        if (!buffer) return make_error(Errc::io, "out of memory", "writing an ISO image");
        std::memcpy(buffer, text.data(), text.size());
        IsoStream* stream = nullptr;
        if (int r = iso_memory_stream_new(buffer, text.size(), &stream); r < 0) {
            std::free(buffer);
            return iso_error("iso_memory_stream_new", r);
        }
        IsoFile* node = nullptr;
        // The new file takes over our reference to the stream; on failure it is still ours.
        int r = iso_image_add_new_file(image.get(), *folder, name.c_str(), stream, &node);
        if (r < 0) {
            iso_stream_unref(stream);
            return iso_error("iso_image_add_new_file", r);
        }
    }
    IsoWriteOpts* raw_opts = nullptr;
    // Profile 2 ("distribution"): Rock Ridge, ownership and modes replaced by fixed values.
    if (int r = iso_write_opts_new(&raw_opts, 2); r < 0) return iso_error("iso_write_opts_new", r);
    IsoPtr<IsoWriteOpts> opts(raw_opts);
    iso_write_opts_set_joliet(opts.get(), 1);
    // Reproducible bytes: owner root, mode 0444 on files (0555 on the root folder), one fixed
    // timestamp everywhere, a fixed volume "uuid" for the volume descriptor's times.
    iso_write_opts_set_replace_mode(opts.get(), 1, 1, 1, 1);
    iso_write_opts_set_default_uid(opts.get(), 0);
    iso_write_opts_set_default_gid(opts.get(), 0);
    iso_write_opts_set_default_file_mode(opts.get(), 0444);
    iso_write_opts_set_default_dir_mode(opts.get(), 0555);
    const time_t fixed = fixed_time;
    iso_write_opts_set_replace_timestamps(opts.get(), 2);
    iso_write_opts_set_default_timestamp(opts.get(), fixed);
    iso_write_opts_set_always_gmt(opts.get(), 1);
    char uuid[] = "2000010100000000";
    iso_write_opts_set_pvd_times(opts.get(), fixed, fixed, 0, 0, uuid);
    burn_source* raw_source = nullptr;
    if (int r = iso_image_create_burn_source(image.get(), opts.get(), &raw_source); r < 0)
        return iso_error("iso_image_create_burn_source", r);
    IsoPtr<burn_source> source(raw_source);
    std::string bytes;
    bytes.reserve(static_cast<size_t>(source->get_size(source.get())));
    unsigned char block[2048];
    for (;;) {
        // libisofs writes the image on a thread of its own; read_xt hands it over a block at a
        // time and returns 0 at the end.
        int n = source->read_xt(source.get(), block, sizeof block);
        if (n < 0) return iso_error("reading the generated image", n);
        if (n == 0) break;
        bytes.append(reinterpret_cast<char*>(block), static_cast<size_t>(n));
    }
    return bytes;
}

}  // namespace qshim::launcher::detail
