// ConsoleRelay: what QEMU writes reaches serial.log exactly once and the attached client in order,
// also when the socket fills and the writer has to wait (the case QEMU's own log got wrong).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "golden_file.hpp"
#include "launcher/console.hpp"

using namespace qshim;
using qshim::detail::UniqueFd;
using qshim::launcher::detail::ConsoleRelay;
namespace fs = std::filesystem;

namespace {

// 1 MiB of varied bytes: far more than a socket buffer holds, so the writer meets EAGAIN.
std::string blob() {
    std::string s;
    s.reserve(1 << 20);
    uint32_t x = 12345;
    while (s.size() < (1u << 20)) {
        x = x * 1103515245u + 12345u;
        s.push_back(static_cast<char>(x >> 16));
    }
    return s;
}

}  // namespace

TEST_CASE("console relay: the log and the client get every byte once, through a full socket") {
    char dir_template[] = "/tmp/qshim-console-XXXXXX";
    REQUIRE(mkdtemp(dir_template));
    const fs::path dir = dir_template;
    const fs::path log_path = dir / "serial.log";
    const std::string earlier = "from an earlier run\n";
    std::ofstream(log_path, std::ios::binary) << earlier;  // appended to, never truncated

    int pair[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd qemu_end(pair[1]);
    REQUIRE(fcntl(qemu_end.get(), F_SETFL, O_NONBLOCK) == 0);
    UniqueFd log(open(log_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    REQUIRE(log);

    boost::asio::io_context io;
    auto relay = std::make_shared<ConsoleRelay>(io.get_executor());
    relay->start(pair[0], std::move(log));
    std::string seen;
    bool ended = false;
    REQUIRE(relay->attach([&](std::string_view b) { seen.append(b); }, [&] { ended = true; }).ok());

    const std::string sent = blob();
    size_t off = 0;
    int waits = 0;  // writes refused with EAGAIN: the socket was full
    while (off < sent.size()) {
        ssize_t n = ::write(qemu_end.get(), sent.data() + off, sent.size() - off);
        if (n > 0) {
            off += static_cast<size_t>(n);
        } else {
            REQUIRE(errno == EAGAIN);
            ++waits;
            io.run_one();  // let the relay drain some
        }
    }
    qemu_end.reset();  // QEMU exits: the relay reads to EOF and ends
    io.run();

    CHECK(waits > 0);
    CHECK(ended);
    CHECK(seen.size() == sent.size());
    CHECK(seen == sent);
    const std::string logged = qshim::test::read_file(log_path);
    CHECK(logged.size() == earlier.size() + sent.size());
    CHECK(logged == earlier + sent);
    fs::remove_all(dir);
}

TEST_CASE("console relay: without a log, output nobody reads is dropped") {
    int pair[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    UniqueFd qemu_end(pair[1]);
    boost::asio::io_context io;
    auto relay = std::make_shared<ConsoleRelay>(io.get_executor());
    relay->start(pair[0], UniqueFd());
    REQUIRE(::write(qemu_end.get(), "nobody\n", 7) == 7);
    qemu_end.reset();
    io.run();
    // Ended: nobody can attach any more.
    CHECK_FALSE(relay->attach([](std::string_view) {}, [] {}).ok());
}
