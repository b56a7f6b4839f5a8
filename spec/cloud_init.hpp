// The spec's cloudInit section: the NoCloud seed's files, inline or read from files.
#pragma once

#include <qshim/spec.hpp>
#include <string>

#include "spec/decoder.hpp"

namespace qshim::spec::detail {

// Reads cloudInit: for each of userData, metaData and networkConfig, the inline text or the
// *File it names (resolved against `base_dir`, read now, so its problems carry the field's
// position). Text must be UTF-8 without NUL; metaData and networkConfig must be YAML maps; all
// files together at most max_seed_bytes.
CloudInit read_cloud_init(Diagnostics& diags, const Node& map, const std::string& base_dir);

// Whether `text` is UTF-8 (shortest forms, no surrogates) without a NUL byte.
bool is_text(std::string_view text);

}  // namespace qshim::spec::detail
