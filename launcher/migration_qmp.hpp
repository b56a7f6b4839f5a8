// What both sides of a migration say to QEMU over QMP: the names they agree on and the argument
// objects of the commands (docs/migration.md). Pure: no I/O.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qshim::launcher::detail {

// The name under which qshim hands QEMU the migration socket (getfd), on either side.
inline constexpr const char* migration_fd_name = "qshim-migration";
// The id of the TLS credentials object, on either side.
inline constexpr const char* migration_tls_id = "qshim-migration-tls";

// {"capabilities": [{"capability": NAME, "state": ON}, ...]} for migrate-set-capabilities.
nlohmann::json capabilities_args(const std::vector<std::pair<const char*, bool>>& capabilities);

// getfd's arguments, and the URI that names that fd for migrate / migrate-incoming.
nlohmann::json getfd_args();
nlohmann::json fd_uri_args();

// The tls-creds-x509 object, read by QEMU from DIR (ca-cert.pem, and server-* or client-*).
// `endpoint` is "server" (target) or "client" (source); peers are always verified.
nlohmann::json tls_object(const std::string& dir, const char* endpoint);
nlohmann::json tls_object_del_args();

// Whether QEMU, in this query-migrate status, still has a migration going (the next one must
// wait for it to end).
bool qemu_migration_busy(std::string_view status);

}  // namespace qshim::launcher::detail
