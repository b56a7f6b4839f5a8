// Helpers shared by the CLI commands: loading a spec and printing errors the same way.
#pragma once

#include <optional>
#include <qshim/qshim.hpp>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/exit_codes.hpp"

namespace qshim::cli {

using Command = int (*)(const std::vector<std::string>& args);

// Prints an error: one line, then one line per diagnostic.
void print_error(const Error& error);
int usage_error(const std::string& command, const std::string& message);

// Loads and plans a spec, printing any error; nullopt means "exit with exit_invalid".
struct Planned {
    spec::VmSpec spec;
    topology::Topology topology;
};
std::optional<spec::VmSpec> load_or_report(const std::string& path,
                                           const spec::LoadOptions& options = {});
std::optional<Planned> plan_or_report(const std::string& path,
                                      const spec::LoadOptions& options = {});

// The options every command that reads a spec takes: --volume-root KIND=DIR (for KubeVirt
// manifests), as many as given. nullopt after a usage error was printed.
inline const char* const volume_root_option = "--volume-root";
std::optional<spec::LoadOptions> load_options(const std::string& command, const Args& args);
// The help text for --volume-root, as each command's help shows it.
extern const char* const volume_root_help;

// Prints the text, or the error that kept it from being written; the command's exit code.
int print_or_report(const Result<std::string>& text);

// Whether `args` asks for help (-h/--help anywhere).
bool wants_help(const std::vector<std::string>& args);

int cmd_validate(const std::vector<std::string>& args);
int cmd_topology(const std::vector<std::string>& args);
int cmd_cmdline(const std::vector<std::string>& args);
int cmd_plan(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_ctl(const std::vector<std::string>& args);
int cmd_convert(const std::vector<std::string>& args);

}  // namespace qshim::cli
