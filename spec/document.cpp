// YAML/JSON text to a positioned Node tree, through yaml-cpp's event parser.
#include "spec/document.hpp"

#include <nlohmann/json.hpp>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <optional>
#include <sstream>

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

// Builds the tree from parser events. The first problem stops the build: a document that is not
// well formed has no meaningful fields to report on.
class TreeBuilder : public YAML::EventHandler {
public:
    explicit TreeBuilder(std::string file) : file_(std::move(file)) {}

    std::optional<Node> root;
    std::optional<Error> error;
    int documents = 0;

    void OnDocumentStart(const YAML::Mark&) override { ++documents; }
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
        std::optional<Node> pending_key;  // maps alternate key, value
    };

    static Node make(Node::Kind kind, const YAML::Mark& mark) {
        Node n;
        n.kind = kind;
        n.line = mark.line + 1;
        n.column = mark.column + 1;
        return n;
    }

    void fail(const YAML::Mark& mark, std::string reason) {
        if (!error) error = document_error(file_, mark.line + 1, mark.column + 1, std::move(reason));
    }
    void check_anchor(YAML::anchor_t anchor, const YAML::Mark& mark) {
        if (anchor != YAML::NullAnchor) fail(mark, "YAML anchors (&name) are not supported in a VM spec");
    }
    void check_tag(const std::string& tag, const YAML::Mark& mark) {
        if (!tag.empty() && tag != "?" && tag != "!")
            fail(mark, "YAML tags (" + tag + ") are not supported in a VM spec");
    }

    void open(Node::Kind kind, const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor) {
        check_anchor(anchor, mark);
        check_tag(tag, mark);
        if (static_cast<int>(stack_.size()) >= max_depth)
            fail(mark, "document is nested deeper than " + std::to_string(max_depth) + " levels");
        stack_.push_back({make(kind, mark), std::nullopt});
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
            if (n.kind != Node::Kind::scalar) fail_at(n, "map keys must be plain strings");
            else if (top.node.find(n.value)) fail_at(n, "duplicate key '" + n.value + "'");
            top.pending_key = std::move(n);
        } else {
            top.node.entries.emplace_back(std::move(*top.pending_key), std::move(n));
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

Result<Node> parse_yaml_document(std::string_view text, const std::string& filename) {
    if (text.find('\0') != std::string_view::npos)
        return document_error(filename, 0, 0, "file contains a NUL byte; a spec is text");
    std::istringstream in{std::string(text)};
    TreeBuilder builder(filename);
    try {
        YAML::Parser parser(in);
        while (!builder.error && parser.HandleNextDocument(builder)) {
        }
    } catch (const YAML::Exception& e) {
        return document_error(filename, e.mark.line + 1, e.mark.column + 1,
                              "malformed YAML: " + e.msg);
    } catch (const std::exception& e) {
        return document_error(filename, 0, 0, std::string("malformed YAML: ") + e.what());
    }
    if (builder.error) return std::move(*builder.error);
    if (builder.documents > 1)
        return document_error(filename, 0, 0, "file holds several YAML documents; a spec is one");
    if (!builder.root || builder.root->kind != Node::Kind::map)
        return document_error(filename, builder.root ? builder.root->line : 1,
                              builder.root ? builder.root->column : 1,
                              "a spec must be a map of fields (name: ..., disks: ...)");
    return std::move(*builder.root);
}

namespace {

// nlohmann reports a byte offset; turn it into the line:column users see in an editor.
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

// Rejects JSON nesting deeper than max_depth before nlohmann recurses into it.
bool too_deep(std::string_view text) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) return true;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return false;
}

}  // namespace

Result<Node> parse_json_document(std::string_view text, const std::string& filename) {
    if (too_deep(text))
        return document_error(filename, 0, 0,
                              "document is nested deeper than " + std::to_string(max_depth) + " levels");
    // nlohmann is strict about JSON syntax (trailing commas, comments, control characters);
    // yaml-cpp then gives us the positions, since JSON is a subset of YAML 1.2.
    try {
        [[maybe_unused]] auto checked = nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::parse_error& e) {
        auto [line, column] = line_column(text, e.byte > 0 ? e.byte - 1 : 0);
        std::string what = e.what();
        auto pos = what.find("syntax error");
        return document_error(filename, line, column,
                              "malformed JSON: " + (pos == std::string::npos ? what : what.substr(pos)));
    }
    // Tabs are JSON whitespace but not YAML indentation; outside strings (the only place valid
    // JSON can hold them) a space is equivalent and keeps every column where it was.
    std::string yaml(text);
    for (char& c : yaml)
        if (c == '\t') c = ' ';
    return parse_yaml_document(yaml, filename);
}

}  // namespace qshim::spec::detail
