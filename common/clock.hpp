// Wall-clock timestamps for events and API lines.
#pragma once

#include <string>

namespace qshim::detail {

// Now, as RFC 3339 UTC with microseconds: 2026-11-21T22:10:03.123456Z.
std::string now_rfc3339();

}  // namespace qshim::detail
