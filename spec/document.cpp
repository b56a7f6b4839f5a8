// YAML/JSON text to a positioned Node tree, through yaml-cpp's event parser.
#include "spec/document.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unordered_set>

namespace qshim::spec::detail {

const Node* Node::find(std::string_view key) const {
    for (const auto& [k, v] : entries)
        if (k.value == key) return &v;
    return nullptr;
}

namespace {

Error document_error(const std::string& file, int line, int column, std::string reason) {
    Error e = make_error(Errc::invalid_spec, reason, "loading spec " + file);
    e.diagnostics.push_back({file, line, column, "", std::move(reason)});
    return e;
}

// A byte offset as the line:column users see in an editor.
std::pair<int, int> line_column(std::string_view text, size_t offset) {
    int line = 1, column = 1;
    for (size_t i = 0; i < offset && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++line;
            column = 1;
        } else {
            ++column;
        }
    }
    return {line, column};
}

// The offset of the first byte that breaks strict UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF), if any.
std::optional<size_t> invalid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        size_t n = 0;  // continuation bytes
        if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3;
        else if (c >= 0x80)
            return i;
        if (i + n >= s.size()) return i;
        auto next = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
        // The second byte's range is narrower after E0, ED, F0 and F4.
        unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (n > 0 && (next(1) < lo || next(1) > hi)) return i;
        for (size_t k = 2; k <= n; ++k)
            if ((next(k) & 0xc0) != 0x80) return i;
        i += n + 1;
    }
    return std::nullopt;
}

// A spec is UTF-8 text. A NUL would cut a string short in C APIs; yaml-cpp passes other bytes
// through unchecked, but every string ends up in QEMU's JSON arguments, which must be Unicode.
std::optional<Error> check_text(std::string_view text, const std::string& filename) {
    auto at = [&](size_t offset, const char* reason) {
        auto [line, column] = line_column(text, offset);
        return document_error(filename, line, column, reason);
    };
    if (auto nul = text.find('\0'); nul != std::string_view::npos)
        return at(nul, "file contains a NUL byte; a spec is text");
    if (auto bad = invalid_utf8(text)) return at(*bad, "file is not valid UTF-8 text");
    return std::nullopt;
}

// yaml-cpp 0.7 decodes the YAML escapes \N (U+0085) and \_ (U+00A0) to the bare bytes 0x85
// and 0xA0, not to UTF-8, so a valid spec could hold strings that are not (and that QEMU's JSON
// arguments cannot carry). The text was checked to be UTF-8, so such a byte where a character
// starts can only come from those escapes: it is re-encoded as the character it stands for.
// One pass, each scan resuming after the last repair: a megabyte of escapes stays linear.
void repair_escapes(std::string& value) {
    if (!invalid_utf8(value)) return;
    std::string repaired;
    std::string_view rest = value;
    while (auto bad = invalid_utf8(rest)) {
        auto byte = static_cast<unsigned char>(rest[*bad]);
        if (byte != 0x85 && byte != 0xa0) break;  // not from an escape: left as it is
        repaired.append(rest.substr(0, *bad));
        repaired += '\xc2';
        repaired += static_cast<char>(byte);
        rest.remove_prefix(*bad + 1);
    }
    repaired.append(rest);
    value = std::move(repaired);
}

// Builds the tree from parser events. The first problem stops the build: a document that is not
// well formed has no meaningful fields to report on.
class TreeBuilder : public YAML::EventHandler {
  public:
    explicit TreeBuilder(std::string file) : file_(std::move(file)) {}

    std::optional<Node> root;
    std::optional<Error> error;
    int documents = 0;

    void OnDocumentStart(const YAML::Mark& mark) override {
        if (++documents > 1) fail(mark, "file holds several YAML documents; a spec is one");
    }
    void OnDocumentEnd() override {}

    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        Node n = make(Node::Kind::null, mark);
        check_anchor(anchor, mark);
        add(std::move(n));
    }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
        fail(mark, "YAML aliases (*name) are not supported in a VM spec");
        add(make(Node::Kind::null, mark));
    }
    void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  const std::string& value) override {
        check_anchor(anchor, mark);
        check_tag(tag, mark);
        Node n = make(Node::Kind::scalar, mark);
        n.value = value;
        repair_escapes(n.value);
        n.quoted = tag == "!";  // yaml-cpp tags quoted scalars "!" and plain ones "?"
        add(std::move(n));
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value) override {
        open(Node::Kind::sequence, mark, tag, anchor);
    }
    void OnSequenceEnd() override { close(); }
    void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value) override {
        open(Node::Kind::map, mark, tag, anchor);
    }
    void OnMapEnd() override { close(); }

  private:
    struct Open {
        Node node;
        std::optional<Node> pending_key;       // maps alternate key, value
        std::unordered_set<std::string> keys;  // a scan of entries per key would be quadratic
    };

    static Node make(Node::Kind kind, const YAML::Mark& mark) {
        Node n;
        n.kind = kind;
        n.line = mark.line + 1;
        n.column = mark.column + 1;
        return n;
    }

    void fail(const YAML::Mark& mark, std::string reason) {
        if (!error)
            error = document_error(file_, mark.line + 1, mark.column + 1, std::move(reason));
    }
    void check_anchor(YAML::anchor_t anchor, const YAML::Mark& mark) {
        if (anchor != YAML::NullAnchor)
            fail(mark, "YAML anchors (&name) are not supported in a VM spec");
    }
    void check_tag(const std::string& tag, const YAML::Mark& mark) {
        if (!tag.empty() && tag != "?" && tag != "!")
            fail(mark, "YAML tags (" + tag + ") are not supported in a VM spec");
    }

    void open(Node::Kind kind, const YAML::Mark& mark, const std::string& tag,
              YAML::anchor_t anchor) {
        check_anchor(anchor, mark);
        check_tag(tag, mark);
        if (static_cast<int>(stack_.size()) >= max_depth)
            fail(mark, "document is nested deeper than " + std::to_string(max_depth) + " levels");
        stack_.push_back({make(kind, mark), std::nullopt, {}});
    }

    void close() {
        Node done = std::move(stack_.back().node);
        stack_.pop_back();
        add(std::move(done));
    }

    void add(Node n) {
        if (stack_.empty()) {
            root = std::move(n);
            return;
        }
        Open& top = stack_.back();
        if (top.node.kind == Node::Kind::sequence) {
            top.node.items.push_back(std::move(n));
        } else if (!top.pending_key) {
            if (n.kind != Node::Kind::scalar)
                fail_at(n, "map keys must be plain strings");
            else if (!top.keys.insert(n.value).second)
                fail_at(n, "duplicate key '" + n.value + "'");
            top.pending_key = std::move(n);
        } else {
            top.node.entries.push_back({std::move(*top.pending_key), std::move(n)});
            top.pending_key.reset();
        }
    }

    void fail_at(const Node& n, std::string reason) {
        if (!error) error = document_error(file_, n.line, n.column, std::move(reason));
    }

    std::string file_;
    std::vector<Open> stack_;
};

}  // namespace

Result<std::optional<Node>> parse_yaml_value(std::string_view text, const std::string& filename) {
    if (auto bad = check_text(text, filename)) return std::move(*bad);
    std::istringstream in{std::string(text)};
    TreeBuilder builder(filename);
    try {
        YAML::Parser parser(in);
        while (!builder.error && parser.HandleNextDocument(builder)) {
        }
    } catch (const YAML::Exception& e) {
        // The parser runs on after the builder's first finding (events cannot stop it), so a
        // later throw, such as yaml-cpp's own depth limit, must not hide that finding.
        if (builder.error) return std::move(*builder.error);
        return document_error(filename, e.mark.line + 1, e.mark.column + 1,
                              "malformed YAML: " + e.msg);
    } catch (const std::exception& e) {
        if (builder.error) return std::move(*builder.error);
        return document_error(filename, 0, 0, std::string("malformed YAML: ") + e.what());
    }
    if (builder.error) return std::move(*builder.error);
    return std::move(builder.root);
}

Result<Node> parse_yaml_document(std::string_view text, const std::string& filename) {
    auto root = parse_yaml_value(text, filename);
    if (!root) return std::move(root).error();
    if (!*root || (*root)->kind != Node::Kind::map)
        return document_error(filename, *root ? (*root)->line : 1, *root ? (*root)->column : 1,
                              "a spec must be a map of fields (name: ..., disks: ...)");
    return std::move(**root);
}

namespace {

// Finds JSON nesting deeper than max_depth before nlohmann recurses into it: the offset of the
// first bracket too deep.
std::optional<size_t> too_deep(std::string_view text) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) return i;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return std::nullopt;
}

// A JSON syntax check that builds nothing and hears of every error through parse_error, where
// nlohmann::json::parse throws out_of_range, not parse_error, for a number past a double (1e999).
class SyntaxCheck : public nlohmann::json_sax<nlohmann::json> {
  public:
    std::optional<std::pair<size_t, std::string>> error;  // byte offset and message

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(size_t position, const std::string&,
                     const nlohmann::json::exception& e) override {
        error.emplace(position, reason(e.what()));
        return false;
    }

  private:
    // Drops the "[json.exception.parse_error.101] parse error at line 1, column 2: " preamble:
    // the diagnostic carries the position.
    static std::string reason(const std::string& what) {
        if (auto p = what.find("syntax error"); p != std::string::npos) return what.substr(p);
        if (auto p = what.find("] "); p != std::string::npos) return what.substr(p + 2);
        return what;
    }
};

}  // namespace

Result<Node> parse_json_document(std::string_view text, const std::string& filename) {
    // First, so that nlohmann's messages, which quote the input, quote only valid text.
    if (auto bad = check_text(text, filename)) return std::move(*bad);
    if (auto deep = too_deep(text)) {
        auto [line, column] = line_column(text, *deep);
        return document_error(
            filename, line, column,
            "document is nested deeper than " + std::to_string(max_depth) + " levels");
    }
    // nlohmann is strict about JSON syntax (trailing commas, comments, control characters);
    // yaml-cpp then gives us the positions, since JSON is a subset of YAML 1.2.
    SyntaxCheck check;
    nlohmann::json::sax_parse(text.begin(), text.end(), &check);
    if (check.error) {
        auto& [byte, reason] = *check.error;
        auto [line, column] = line_column(text, byte > 0 ? byte - 1 : 0);
        return document_error(filename, line, column, "malformed JSON: " + reason);
    }
    // Tabs are JSON whitespace but not YAML indentation; outside strings (the only place valid
    // JSON can hold them) a space is equivalent and keeps every column where it was.
    std::string yaml(text);
    for (char& c : yaml)
        if (c == '\t') c = ' ';
    return parse_yaml_document(yaml, filename);
}

}  // namespace qshim::spec::detail
