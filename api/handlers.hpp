// The control API endpoints that answer with one response, each a thin call into the Vm.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <qshim/vm.hpp>
#include <string>

#include "api/json.hpp"
#include "api/routes.hpp"

namespace qshim::api {

// Answers a routed request (any endpoint but events). Runs on the Vm's executor; suspends only
// inside the Vm's own calls, which serialize mutations, so reads on other connections proceed.
boost::asio::awaitable<Response> handle(Vm& vm, const Route& route, std::string body);

}  // namespace qshim::api
