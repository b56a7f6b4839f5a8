// seed_files() and seed_image(): the cidata ISO, written with libisofs (Debian's libisofs6,
// which xorriso is built on). ISO 9660 rather than vfat: it is the format cloud-init documents
// first and KubeVirt writes, read-only by nature, and a maintained library writes it for us.
#include "launcher/cloud_init_seed.hpp"

#include <fmt/format.h>
// The struct burn_source that libisofs hands out is declared by libburn, unless this asks
// libisofs for its own copy of the declaration (we read the image without libburn).
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

namespace qshim::launcher::detail {

namespace {

uint64_t fnv1a(uint64_t h, std::string_view bytes) {
    for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
    return h;
}

// Deterministic and the same on every host: a changed input gives another id.
std::string instance_id(const spec::CloudInit& c, std::string_view vm_name) {
    uint64_t h = 14695981039346656037ull;
    for (std::string_view part :
         {vm_name, std::string_view(c.user_data.text), std::string_view(c.meta_data.text),
          std::string_view(c.network_config.text)}) {
        h = fnv1a(h, part);
        h = fnv1a(h, std::string_view("\0", 1));  // "ab"+"c" and "a"+"bc" differ
    }
    return fmt::format("qshim-{}-{:016x}", vm_name, h);
}

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
                      "writing the cloud-init seed image");
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

}  // namespace

Result<std::map<std::string, std::string>> seed_files(const spec::CloudInit& c,
                                                      std::string_view vm_name) {
    YAML::Node meta;
    try {
        if (c.meta_data.present) meta = YAML::Load(c.meta_data.text);
    } catch (const YAML::Exception& e) {
        return make_error(Errc::invalid_spec, std::string("meta-data is not YAML: ") + e.what(),
                          "writing the cloud-init seed");
    }
    if (meta.IsNull()) meta = YAML::Node(YAML::NodeType::Map);
    if (!meta.IsMap())
        return make_error(Errc::invalid_spec, "meta-data must be a YAML map",
                          "writing the cloud-init seed");
    if (!meta["instance-id"]) meta["instance-id"] = instance_id(c, vm_name);
    if (!meta["local-hostname"]) meta["local-hostname"] = std::string(vm_name);
    YAML::Emitter out;
    out << meta;
    std::map<std::string, std::string> files;
    files["meta-data"] = std::string(out.c_str()) + "\n";
    files["user-data"] = c.user_data.text;
    if (c.network_config.present) files["network-config"] = c.network_config.text;
    return files;
}

Result<std::string> seed_image(const std::map<std::string, std::string>& files) {
    if (!init_libisofs())
        return make_error(Errc::io, "libisofs failed to initialise",
                          "writing the cloud-init seed image");
    IsoImage* raw_image = nullptr;
    if (int r = iso_image_new("cidata", &raw_image); r < 0) return iso_error("iso_image_new", r);
    IsoPtr<IsoImage> image(raw_image);
    iso_image_set_volume_id(image.get(), "cidata");  // what NoCloud looks for
    for (const auto& [name, text] : files) {
        // A memory stream takes a malloc'd buffer and frees it.
        auto* buffer = static_cast<unsigned char*>(std::malloc(text.size() ? text.size() : 1));
        if (!buffer) return make_error(Errc::io, "out of memory", "writing the cloud-init seed");
        std::memcpy(buffer, text.data(), text.size());
        IsoStream* stream = nullptr;
        if (int r = iso_memory_stream_new(buffer, text.size(), &stream); r < 0) {
            std::free(buffer);
            return iso_error("iso_memory_stream_new", r);
        }
        IsoFile* node = nullptr;
        // The new file takes over our reference to the stream; on failure it is still ours.
        int r = iso_image_add_new_file(image.get(), iso_image_get_root(image.get()), name.c_str(),
                                       stream, &node);
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
