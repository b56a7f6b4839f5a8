// Compiles the umbrella header alone and uses the library through it, as an outside program would.
#include <cstdio>
#include <qshim/qshim.hpp>

int main() {
    auto spec = qshim::spec::parse_spec("name: api\nmemory: {size: 64Mi}\n", "api.yaml");
    if (!spec) {
        std::fprintf(stderr, "%s\n", spec.error().what().c_str());
        return 1;
    }
    auto topo = qshim::topology::plan(*spec);
    if (!topo || topo->machine != "pc-q35-7.2") return 1;
    auto command = qshim::launcher::build_command(*spec, *topo);
    return command && !command->argv.empty() ? 0 : 1;
}
