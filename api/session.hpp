// One control API connection: peer check, keep-alive request loop, or an event stream.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <qshim/api.hpp>
#include <qshim/vm.hpp>

namespace qshim::api {

// What the server and its connections share. Bound to the Vm's executor like everything here.
struct ServerContext {
    ServerContext(Vm& v, ApiOptions o) : vm(v), options(o) {}
    Vm& vm;
    ApiOptions options;
    bool stopped = false;
    std::uint64_t next_id = 1;
    // Live connections; stop() calls each to end it: an idle one closes at once, one inside a
    // Vm call answers first, an event stream flushes and sends its last chunk.
    std::map<std::uint64_t, std::function<void()>> closers;
};

boost::asio::awaitable<void> serve_connection(std::shared_ptr<ServerContext> ctx,
                                              boost::asio::local::stream_protocol::socket socket);

}  // namespace qshim::api
