// A parsed YAML/JSON document as a tree of nodes that remember where they were written.
#pragma once

#include <memory>
#include <optional>
#include <qshim/error.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qshim::spec::detail {

struct Node {
    enum class Kind { null, scalar, sequence, map };
    struct Entry;  // not std::pair<Node, Node>: clang cannot instantiate that inside Node

    Kind kind = Kind::null;
    std::string value;    // scalar text
    bool quoted = false;  // a quoted scalar is always a string, never a number or bool
    int line = 0;         // 1-based
    int column = 0;
    std::vector<Node> items;     // sequence
    std::vector<Entry> entries;  // map, in document order

    const Node* find(std::string_view key) const;
};

struct Node::Entry {
    Node key;
    Node value;
};

// Documents nested deeper than this are rejected: no VM spec needs it, and it bounds recursion.
inline constexpr int max_depth = 32;

// Parses YAML (or JSON, which is read strictly first) into a Node tree. Anchors and aliases are
// rejected (they can expand exponentially), as are duplicate keys and multiple documents.
Result<Node> parse_yaml_document(std::string_view text, const std::string& filename);
// The same rules for YAML whose top is any value (cloud-init's files); nullopt for an empty
// document.
Result<std::optional<Node>> parse_yaml_value(std::string_view text, const std::string& filename);
Result<Node> parse_json_document(std::string_view text, const std::string& filename);

}  // namespace qshim::spec::detail
