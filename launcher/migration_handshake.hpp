// What the two qshim say to each other on the migration stream before QEMU sees a byte, and
// after QEMU is done with it (docs/migration.md, "the handshake"). Pure: no I/O.
#pragma once

#include <nlohmann/json.hpp>
#include <qshim/error.hpp>
#include <qshim/fingerprint.hpp>
#include <string>
#include <vector>

namespace qshim::launcher::detail {

// Bumped only by a change an older qshim cannot read; a peer on another version is refused.
inline constexpr int handshake_version = 1;

// Each side's introduction: the source's opens the stream, the target's answers it.
struct Hello {
    std::string vm;  // the VM's name (logged, not compared)
    topology::Fingerprint fingerprint;
    nlohmann::json qemu = nlohmann::json::object();  // QEMU's version (logged, not compared)
    bool postcopy = false;  // source: the target must enable postcopy-ram too
    bool tls = false;       // the stream is TLS: both sides must agree
    // Target only: whether it takes the stream (equal fingerprints).
    bool accept = true;
};

nlohmann::json to_json(const Hello& hello);
// Errc::protocol for a message that is not a Hello of this version.
Result<Hello> parse_hello(const nlohmann::json& message);

// What differs, from this side's view: the guest ABI facts, and TLS on one side only. Empty:
// the same guest, streamed the same way.
std::vector<std::string> differences(const Hello& here, const Hello& there);

// "disks[data]: 0000:03:00.0 here, 0000:04:00.0 there; ..." for an Error.
std::string describe_differences(const std::vector<std::string>& differences);

// After the stream: the target says whether its QEMU loaded the VM, the source commits (it
// will not resume), the target confirms the guest runs. Each is {"step": NAME, "ok": bool,
// "reason": "..."}.
nlohmann::json step_message(const std::string& step, bool ok, const std::string& reason = {});
// The step's `ok`, or an Error naming the step expected and what came instead (the peer's
// reason when it said no).
Result<void> check_step(const nlohmann::json& message, const std::string& step);

}  // namespace qshim::launcher::detail
