// A blocking Beast HTTP/1.1 client over a unix socket: all `qshim ctl` needs, nothing more.
#include "cli/ctl_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <exception>

namespace qshim::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::local::stream_protocol;

std::string percent_encode(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        bool unreserved = std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved && c < 0x80) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::optional<HttpReply> http_call(const std::string& socket_path, const HttpRequest& request,
                                   std::string& error,
                                   const std::function<void(std::string_view)>& on_data) {
    asio::io_context io;
    stream_protocol::socket socket(io);
    boost::system::error_code ec;
    try {
        socket.connect(stream_protocol::endpoint(socket_path), ec);
    } catch (const std::exception& e) {  // the endpoint throws for a path longer than sun_path
        error = e.what();
        return std::nullopt;
    }
    if (ec) {
        error = ec.message();
        return std::nullopt;
    }

    http::request<http::string_body> req(http::string_to_verb(request.method), request.target, 11);
    req.set(http::field::host, "localhost");
    req.set(http::field::user_agent, "qshim-ctl");
    req.set(http::field::accept, "application/json, application/x-ndjson");
    if (!request.body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = request.body;
    }
    req.keep_alive(false);
    req.prepare_payload();
    http::write(socket, req, ec);
    if (ec) {
        error = "sending the request: " + ec.message();
        return std::nullopt;
    }

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);  // the event stream has no end we could know
    http::read_header(socket, buffer, parser, ec);
    if (ec) {
        error = "reading the answer: " + ec.message();
        return std::nullopt;
    }
    HttpReply reply;
    reply.status = static_cast<int>(parser.get().result_int());
    const bool streaming = on_data && reply.status == 200;
    if (streaming) on_data(std::string_view());
    while (!parser.is_done()) {
        char chunk[8192];
        parser.get().body().data = chunk;
        parser.get().body().size = sizeof chunk;
        // read_some returns what has arrived: read would wait for a full buffer or the end,
        // and an event stream's lines are short and its end far away.
        http::read_some(socket, buffer, parser, ec);
        if (ec == http::error::need_buffer) ec = {};  // the chunk is full: hand it on, read more
        std::size_t n = sizeof chunk - parser.get().body().size;
        if (streaming)
            on_data(std::string_view(chunk, n));
        else
            reply.body.append(chunk, n);
        if (ec) {
            // A stream's server may close without the last chunk (it stopped, or died): the
            // stream is over all the same. A truncated ordinary answer is an error.
            if (streaming) return reply;
            error = "reading the answer: " + ec.message();
            return std::nullopt;
        }
    }
    return reply;
}

}  // namespace qshim::cli
