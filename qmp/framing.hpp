// Splits the QMP byte stream into JSON lines, refusing any line longer than a bound.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace qshim::qmp::detail {

// QEMU ends every QMP message with "\r\n" and never puts a raw newline inside one, so a line is
// a message. Pure: no I/O, so the stream's edge cases are unit-testable.
class LineFramer {
  public:
    enum class Status {
        line,        // a complete line was taken
        incomplete,  // no complete line yet; append more bytes
        too_long,    // a line exceeds the bound; the stream is unusable from here on
    };

    explicit LineFramer(std::size_t max_line_bytes) : max_(max_line_bytes) {}

    void append(std::string_view bytes);
    // Takes the next complete, non-empty line without its "\n" or "\r\n".
    Status next(std::string& line);
    // Bytes of an unfinished line: non-zero at end of stream means the peer stopped mid-message.
    std::size_t pending_bytes() const { return buf_.size() - start_; }

  private:
    std::string buf_;
    std::size_t start_ = 0;  // first byte not yet taken
    std::size_t scanned_ =
        0;  // bytes from start_ known to hold no newline: no rescans of a big line
    std::size_t max_;
    bool failed_ = false;
};

}  // namespace qshim::qmp::detail
