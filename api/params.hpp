// Parameters of the control API that are not a device: timeouts in a query or a small body.
#pragma once

#include <chrono>
#include <optional>
#include <qshim/vm.hpp>
#include <string>
#include <string_view>

#include "api/json.hpp"
#include "api/routes.hpp"

namespace qshim::api {

// Longest timeout a request may ask for; more is a typo more often than an intent.
inline constexpr unsigned max_timeout_seconds = 3600;
inline constexpr std::chrono::seconds default_remove_timeout{30};

// The timeoutSeconds of a DELETE (default 30 s), or the 400 explaining why it is unusable.
struct Timeout {
    std::chrono::milliseconds value = default_remove_timeout;
    std::optional<Response> error;
};
Timeout timeout_param(const Route& route);

// The optional body of POST /v1/vm/shutdown: empty, or {"timeoutSeconds": N}.
struct Grace {
    std::optional<std::chrono::milliseconds> value;  // nullopt: the spec's grace period
    std::optional<Response> error;
};
Grace shutdown_body(std::string_view body);

// The body of POST /v1/vm/migrate (docs/api.md): {"uri": ..., "downtimeLimitMs": ..., ...}.
struct Migration {
    MigrationRequest value;
    std::optional<Response> error;
};
Migration migrate_body(std::string_view body);

// The body of POST /v1/vm/disks/{name}/media (docs/api.md): {"path": P, "format": F} inserts
// a disc, {"eject": true} ejects it; either may add "force": true.
struct Media {
    MediumChange value;
    std::optional<Response> error;
};
Media media_body(std::string_view body);

}  // namespace qshim::api
