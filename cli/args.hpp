// A small command-line parser: positional arguments and --options (with or without values).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace qshim::cli {

class Args {
  public:
    // `with_value` names the options that take a value (--format json or --format=json);
    // `flags` the ones that do not. Anything else starting with "-" is an error.
    Args(const std::vector<std::string>& argv, std::set<std::string> with_value,
         std::set<std::string> flags);

    bool ok() const { return error_.empty(); }
    const std::string& error() const { return error_; }
    bool has(const std::string& name) const { return values_.count(name) > 0; }
    std::optional<std::string> get(const std::string& name) const;  // the last one given
    std::vector<std::string> all(const std::string& name) const;    // each one, in order
    const std::vector<std::string>& positional() const { return positional_; }

  private:
    std::map<std::string, std::string> values_;
    std::map<std::string, std::vector<std::string>> all_;
    std::vector<std::string> positional_;
    std::string error_;
};

}  // namespace qshim::cli
