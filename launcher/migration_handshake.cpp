// The migration handshake's messages (docs/migration.md).
#include "launcher/migration_handshake.hpp"

#include <fmt/format.h>

namespace qshim::launcher::detail {

using nlohmann::json;

json to_json(const Hello& hello) {
    json facts = json::array();
    for (const auto& [key, value] : hello.fingerprint.facts) facts.push_back({key, value});
    return {{"qshimMigration", handshake_version},
            {"vm", hello.vm},
            {"accept", hello.accept},
            {"postcopy", hello.postcopy},
            {"tls", hello.tls},
            {"qemu", hello.qemu},
            {"fingerprint", {{"digest", hello.fingerprint.digest}, {"facts", facts}}}};
}

Result<Hello> parse_hello(const json& m) {
    auto bad = [](const std::string& why) {
        return make_error(Errc::protocol, "the peer's handshake " + why);
    };
    if (!m.is_object() || !m.contains("qshimMigration"))
        return bad("is not a qshim migration handshake (is the peer a qshim?)");
    if (m["qshimMigration"] != handshake_version)
        return bad(fmt::format("is version {}; this qshim speaks version {}",
                               m["qshimMigration"].dump(), handshake_version));
    Hello h;
    const json* fp = m.contains("fingerprint") ? &m["fingerprint"] : nullptr;
    if (!fp || !fp->is_object() || !fp->contains("facts") || !(*fp)["facts"].is_array())
        return bad("has no fingerprint");
    for (const auto& f : (*fp)["facts"]) {
        if (!f.is_array() || f.size() != 2 || !f[0].is_string() || !f[1].is_string())
            return bad("has a fingerprint fact that is not [key, value]");
        h.fingerprint.facts.emplace_back(f[0].get<std::string>(), f[1].get<std::string>());
    }
    // The digest is recomputed, never trusted: it only summarises the facts.
    h.fingerprint.digest = topology::fingerprint_digest(h.fingerprint.facts);
    if (m.contains("vm") && m["vm"].is_string()) h.vm = m["vm"].get<std::string>();
    if (m.contains("qemu") && m["qemu"].is_object()) h.qemu = m["qemu"];
    if (m.contains("postcopy")) {
        if (!m["postcopy"].is_boolean()) return bad("has a postcopy that is not a boolean");
        h.postcopy = m["postcopy"].get<bool>();
    }
    if (m.contains("tls")) {
        if (!m["tls"].is_boolean()) return bad("has a tls that is not a boolean");
        h.tls = m["tls"].get<bool>();
    }
    if (m.contains("accept")) {
        if (!m["accept"].is_boolean()) return bad("has an accept that is not a boolean");
        h.accept = m["accept"].get<bool>();
    }
    return h;
}

std::vector<std::string> differences(const Hello& here, const Hello& there) {
    auto out = topology::compare(here.fingerprint, there.fingerprint);
    auto tls = [](bool on) { return on ? "on" : "off"; };
    if (here.tls != there.tls)
        out.push_back(fmt::format("tls: {} here, {} there (--tls-dir on both sides, or neither)",
                                  tls(here.tls), tls(there.tls)));
    return out;
}

std::string describe_differences(const std::vector<std::string>& differences) {
    std::string text;
    for (const auto& d : differences) text += (text.empty() ? "" : "; ") + d;
    return text;
}

json step_message(const std::string& step, bool ok, const std::string& reason) {
    json m = {{"step", step}, {"ok", ok}};
    if (!reason.empty()) m["reason"] = reason;
    return m;
}

Result<void> check_step(const json& m, const std::string& step) {
    if (!m.is_object() || m.value("step", std::string()) != step || !m.contains("ok") ||
        !m["ok"].is_boolean())
        return make_error(
            Errc::protocol,
            fmt::format("expected the peer's '{}', got {}", step,
                        m.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 200)));
    if (!m["ok"].get<bool>())
        return make_error(Errc::launch,
                          fmt::format("the peer's {}: {}", step, m.value("reason", "no reason")));
    return Result<void>{};
}

}  // namespace qshim::launcher::detail
