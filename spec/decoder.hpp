// Reads typed fields out of a Node tree, collecting every problem as a positioned Diagnostic.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spec/document.hpp"

namespace qshim::spec::detail {

// Collects diagnostics for one file.
class Diagnostics {
  public:
    explicit Diagnostics(std::string file) : file_(std::move(file)) {}

    void add(const Node& at, std::string path, std::string reason) {
        list_.push_back({file_, at.line, at.column, std::move(path), std::move(reason)});
    }
    // A problem in another file than the document (the domain XML of --pin-from).
    void add(Diagnostic d) { list_.push_back(std::move(d)); }
    bool empty() const { return list_.empty(); }
    std::vector<Diagnostic> take() { return std::move(list_); }
    const std::string& file() const { return file_; }

  private:
    std::string file_;
    std::vector<Diagnostic> list_;
};

// A view of one map in the document. Every key read through it is "known"; finish() reports the
// rest as unknown fields, so a typo is never silently ignored.
class Fields {
  public:
    Fields(Diagnostics& diags, const Node& map, std::string path);

    // The node for `key`, or nullptr when absent.
    const Node* get(std::string_view key);
    std::string path_of(std::string_view key) const;

    // Each reader leaves `out` untouched when the field is absent and returns whether a value
    // was read; a present field of the wrong type or range is reported and returns false.
    bool string(std::string_view key, std::string& out);
    bool uint(std::string_view key, unsigned& out, unsigned min, unsigned max);
    bool boolean(std::string_view key, bool& out);
    template <typename E>
    bool choice(std::string_view key, E& out,
                std::initializer_list<std::pair<const char*, E>> options);

    // Reports a missing required field at the map's position.
    void require(std::string_view key);
    // Reports every key no reader asked for, with `reason` and a close known name if any.
    void finish(std::string_view reason = "unknown field");

    Diagnostics& diags() { return diags_; }

  private:
    bool choice_index(std::string_view key, std::vector<std::string_view> names, size_t& index);

    Diagnostics& diags_;
    const Node& map_;
    std::string path_;
    std::vector<std::string> known_;
};

template <typename E>
bool Fields::choice(std::string_view key, E& out,
                    std::initializer_list<std::pair<const char*, E>> options) {
    std::vector<std::string_view> names;
    for (const auto& o : options) names.push_back(o.first);
    size_t index = 0;
    if (!choice_index(key, names, index)) return false;
    out = (options.begin() + index)->second;
    return true;
}

// Scalar checks shared by the readers and the spec rules.
bool is_plain_non_string(const Node& n);  // an unquoted number, bool or null
std::optional<uint64_t> parse_uint(std::string_view text);

// True when `node` is a map/sequence; otherwise reports "must be a map" etc.
bool expect_kind(Diagnostics& diags, const Node& node, Node::Kind kind, const std::string& path);

}  // namespace qshim::spec::detail
