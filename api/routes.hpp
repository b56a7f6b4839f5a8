// The control API's request targets mapped to endpoints (docs/api.md): pure, no I/O.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace qshim::api {

enum class Endpoint {
    vm,                // GET    /v1/vm
    topology,          // GET    /v1/vm/topology
    cpus,              // GET    /v1/vm/cpus
    disks,             // POST   /v1/vm/disks
    disk,              // DELETE /v1/vm/disks/{name}
    media,             // POST   /v1/vm/disks/{name}/media
    interfaces,        // POST   /v1/vm/interfaces
    interface,         // DELETE /v1/vm/interfaces/{name}
    pause,             // POST   /v1/vm/pause
    resume,            // POST   /v1/vm/resume
    shutdown,          // POST   /v1/vm/shutdown
    migrate,           // POST   /v1/vm/migrate
    migration,         // GET    /v1/vm/migration
    cancel_migration,  // DELETE /v1/vm/migration
    console,           // GET    /v1/vm/console (Upgrade: qshim-console)
    events,            // GET    /v1/events
};

struct Route {
    enum class Outcome {
        ok,
        not_found,           // no such path: 404
        method_not_allowed,  // the path exists, the method does not: 405 with `allow`
        bad_request,         // malformed target (percent-encoding, query): 400 with `message`
    };
    Outcome outcome = Outcome::not_found;
    Endpoint endpoint = Endpoint::vm;
    std::string name;                          // {name} of the disk/interface endpoints, decoded
    std::map<std::string, std::string> query;  // decoded; only keys the endpoint accepts
    std::string allow;                         // for method_not_allowed, e.g. "POST"
    std::string message;                       // why, for anything but ok
    std::string bad_field;                     // for bad_request about a query key, that key
};

// `target` is the request-target as received: origin form ("/v1/vm?x=1") or absolute form
// ("http://localhost/v1/vm"). One trailing slash is ignored ("/v1/vm/" is "/v1/vm"); an empty
// segment ("/v1//vm") matches nothing. Path segments are percent-decoded after splitting, so a
// name may contain an encoded "/" without changing the route.
Route route(std::string_view method, std::string_view target);

// "%41b+c" -> "Ab+c" ("Ab c" with plus_is_space, as in a query). nullopt for a bad escape or an
// encoded NUL (no name or value has a use for one, and C APIs would truncate at it).
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space = false);

// "a=1&b=x%20y" -> {a: 1, b: "x y"}. A key without "=" has an empty value. nullopt for a bad
// escape or a repeated key (which of two timeouts was meant is not ours to guess).
std::optional<std::map<std::string, std::string>> parse_query(std::string_view query);

}  // namespace qshim::api
