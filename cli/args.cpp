// Parsing of subcommand arguments.
#include "cli/args.hpp"

namespace qshim::cli {

Args::Args(const std::vector<std::string>& argv, std::set<std::string> with_value,
           std::set<std::string> flags) {
    bool options_done = false;
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (options_done || a.size() < 2 || a[0] != '-') {
            positional_.push_back(a);
            continue;
        }
        if (a == "--") {
            options_done = true;
            continue;
        }
        std::string name = a, value;
        bool inline_value = false;
        if (auto eq = a.find('='); eq != std::string::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
            inline_value = true;
        }
        if (flags.count(name)) {
            if (inline_value) {
                error_ = name + " takes no value";
                return;
            }
            values_[name] = "";
        } else if (with_value.count(name)) {
            if (!inline_value) {
                if (i + 1 >= argv.size()) {
                    error_ = name + " needs a value";
                    return;
                }
                value = argv[++i];
            }
            values_[name] = value;
            all_[name].push_back(value);
        } else {
            error_ = "unknown option " + name;
            return;
        }
    }
}

std::optional<std::string> Args::get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
}

std::vector<std::string> Args::all(const std::string& name) const {
    auto it = all_.find(name);
    return it == all_.end() ? std::vector<std::string>{} : it->second;
}

}  // namespace qshim::cli
