// GET /v1/vm/console: the guest's serial console over the API socket. The request asks for
// `Upgrade: qshim-console`; after `101 Switching Protocols` the connection carries raw bytes both
// ways (what the guest writes, what the client types) until either side closes or the VM ends.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <functional>

#include "api/session.hpp"

namespace qshim::api {

using ApiStream =
    boost::beast::basic_stream<boost::asio::local::stream_protocol, boost::asio::any_io_executor>;

// Serves one console client. `buffer` holds what was read past the request's head (the client's
// first keys); `end_hook` is what stop() calls to end it.
boost::asio::awaitable<void> serve_console(
    ServerContext& ctx, ApiStream& stream,
    const boost::beast::http::request<boost::beast::http::string_body>& request,
    boost::beast::flat_buffer& buffer, std::function<void()>& end_hook);

}  // namespace qshim::api
