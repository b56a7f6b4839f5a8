// The control API: HTTP/1.1 REST with JSON bodies on a unix socket, serving one Vm (docs/api.md).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <qshim/error.hpp>
#include <qshim/export.hpp>
#include <string>

namespace qshim {

class Vm;

// Limits that keep one client from holding the server; the defaults suit a VM's controller.
struct ApiOptions {
    std::size_t max_connections = 64;                // more are answered 503 and closed
    std::chrono::milliseconds read_timeout{30'000};  // to receive a whole request, or idle between
    std::size_t event_queue = 1024;  // lines per event client; the oldest drop first
};

// Bound to the Vm's executor: construct, start and stop it from there. The Vm must outlive the
// server, and the io_context must keep running after stop() until its pending work is done (a
// request already inside the Vm finishes first, then its connection closes).
class QSHIM_API ApiServer {
  public:
    ApiServer(boost::asio::any_io_executor executor, Vm& vm, std::string socket_path,
              ApiOptions options = {});
    ~ApiServer();  // stops
    ApiServer(const ApiServer&) = delete;
    ApiServer& operator=(const ApiServer&) = delete;

    // Creates the socket (mode 0600 from the start; a stale socket left by a killed run is
    // replaced, a live one or any other file is an error) and starts accepting. Clients whose
    // uid (SO_PEERCRED) is neither this process's effective uid nor root get 403.
    [[nodiscard]] Result<void> start();

    // Closes the listener and every connection, ends event streams (their last chunk is sent)
    // and removes the socket file if it is still ours. Idempotent.
    void stop();

    const std::string& socket_path() const;

    class Impl;

  private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace qshim
