// Logging by category with per-category levels (QSHIM_LOG=qmp:debug,*:info) and a sink an
// embedding program can replace.
#pragma once

#include <functional>
#include <qshim/export.hpp>
#include <string>
#include <string_view>

namespace qshim::log {

enum class Level { error = 0, warn, info, debug };

using Sink = std::function<void(std::string_view category, Level level, std::string_view message)>;

// Replaces the sink (default: one line on stderr). Not thread-safe: set it before starting VMs.
QSHIM_API void set_sink(Sink sink);
// Parses "category:level,...,*:level"; unknown words are ignored. Default: "*:info".
QSHIM_API void configure(std::string_view spec);
QSHIM_API bool enabled(std::string_view category, Level level);
QSHIM_API void write(std::string_view category, Level level, std::string_view message);
QSHIM_API const char* to_string(Level level);

}  // namespace qshim::log
