// The guest's serial console when qshim holds it (VmOptions::own_console): QEMU's serial0 is one
// end of a socketpair and this relay the other. It reads for as long as QEMU runs, so output that
// nobody reads is dropped rather than stalling the guest on a full socket, and hands it to the
// one client attached (qshim run --console on a terminal, or the API's console). It also writes
// serial.log: every byte QEMU sent, exactly once.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <qshim/error.hpp>
#include <string>
#include <string_view>

#include "common/unique_fd.hpp"

namespace qshim::launcher::detail {

class ConsoleRelay : public std::enable_shared_from_this<ConsoleRelay> {
  public:
    using Output = std::function<void(std::string_view)>;
    using End = std::function<void()>;

    explicit ConsoleRelay(boost::asio::any_io_executor ex) : socket_(ex) {}

    // Takes qshim's end of the socketpair and starts reading it; everything read is appended
    // to `log` too, when it is open.
    void start(int fd, qshim::detail::UniqueFd log);
    // QEMU is gone: the attached client's `on_end` runs, and nobody may attach again.
    void close();

    // One client at a time (Errc::state while another is attached; Errc::state once the
    // console ended). `on_output` gets the guest's output from now on, `on_end` runs once when
    // the console ends; neither runs after detach.
    Result<std::size_t> attach(Output on_output, End on_end);
    void detach(std::size_t id);
    // Sends bytes to the guest, as typed (Errc::state when the console ended).
    boost::asio::awaitable<Result<void>> write(std::string bytes);

  private:
    static boost::asio::awaitable<void> read_loop(std::shared_ptr<ConsoleRelay> self);

    void append_to_log(std::string_view bytes);

    boost::asio::local::stream_protocol::socket socket_;
    qshim::detail::UniqueFd log_;
    bool open_ = false;
    bool ended_ = false;
    std::size_t client_ = 0;  // 0: none attached
    std::size_t last_id_ = 0;
    Output on_output_;
    End on_end_;
};

}  // namespace qshim::launcher::detail
