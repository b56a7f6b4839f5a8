// libFuzzer target: any bytes through the spec loader, and every spec it accepts through the
// planner, the argv builder and to_yaml. Beyond "no crash" it checks the loader's contract: a
// rejection is invalid_spec with positioned diagnostics, to_yaml output loads back to itself, and
// to_json output loads back to the same spec. (plan-fuzz checks the planner's own contract.)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <qshim/launcher.hpp>
#include <qshim/spec.hpp>
#include <qshim/topology.hpp>
#include <string>
#include <string_view>

namespace {

using namespace qshim;

[[noreturn]] void broken(const char* what, const std::string& detail) {
    std::fprintf(stderr, "spec-fuzz: %s\n%s\n", what, detail.c_str());
    std::abort();
}

void check_rejection(const Error& e, const std::string& file) {
    if (e.code != Errc::invalid_spec)
        broken("rejected with a code other than invalid_spec", e.what());
    if (e.diagnostics.empty()) broken("rejected without a diagnostic", e.what());
    for (const Diagnostic& d : e.diagnostics)
        if (d.file != file || d.line < 0 || d.column < 0 || d.reason.empty())
            broken("malformed diagnostic", to_string(d));
}

void run(std::string_view text, spec::Format format) {
    const std::string file = "/fuzz/vm.spec";
    auto loaded = spec::parse_spec(text, file, {format, {}});
    if (!loaded) {
        check_rejection(loaded.error(), file);
        return;
    }
    std::string yaml = spec::to_yaml(*loaded).value();  // a loaded spec is valid UTF-8
    auto again = spec::parse_spec(yaml, file, {spec::Format::yaml, {}});
    if (!again)
        broken("to_yaml output does not load",
               yaml + "\n" + to_string(again.error().diagnostics.at(0)));
    if (spec::to_yaml(*again).value() != yaml)
        broken("to_yaml is not a fixed point", yaml + "\n---\n" + spec::to_yaml(*again).value());
    // The JSON rendering (what GET /v1/vm shows) is the same spec.
    std::string json = spec::to_json(*loaded).value();
    auto from_json = spec::parse_spec(json, file, {spec::Format::json, {}});
    if (!from_json)
        broken("to_json output does not load",
               json + "\n" + to_string(from_json.error().diagnostics.at(0)));
    if (spec::to_yaml(*from_json).value() != yaml)
        broken("to_json output loads as another spec", json + "\n---\n" + yaml);

    auto topology = topology::plan(*loaded);
    if (!topology) return;  // impossible pins and capacity limits are the planner's to refuse
    (void)topology::to_json(*topology);
    (void)launcher::build_command(*loaded, *topology);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    run(text, spec::Format::yaml);
    run(text, spec::Format::json);
    return 0;
}
