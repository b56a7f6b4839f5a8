// The stale-socket probe: live, stale, and a listener whose backlog is full (must not block).
#include "common/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <thread>
#include <vector>

using namespace qshim::detail;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/qshim-unix-socket-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

int listening_socket(const std::string& path, int backlog) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd, backlog) == 0);
    return fd;
}

}  // namespace

TEST_CASE("a served socket is served, a leftover is stale") {
    TempDir dir;
    std::string path = dir.path / "s.sock";
    int fd = listening_socket(path, 8);
    CHECK(probe_unix_socket(path) == SocketProbe::served);
    close(fd);  // the file stays, nobody listens
    CHECK(probe_unix_socket(path) == SocketProbe::stale);
    CHECK(probe_unix_socket(dir.path / "none.sock") == SocketProbe::unknown);
    CHECK(probe_unix_socket(std::string(200, 'x')) == SocketProbe::unknown);
}

TEST_CASE("a listener with a full backlog is served, and the probe returns at once") {
    TempDir dir;
    std::string path = dir.path / "full.sock";
    int listener = listening_socket(path, 0);
    // Fill the backlog with connections nobody accepts.
    std::vector<int> clients;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    for (int i = 0; i < 64; ++i) {
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int rc = connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        clients.push_back(c);
        if (rc != 0 && errno == EAGAIN) break;
    }
    REQUIRE(errno == EAGAIN);  // the backlog is full: a blocking connect would now wait
    // On a thread of its own, detached: a blocking probe would wait until the listener accepts
    // (never, in this test), and the test must fail rather than hang with it.
    auto result = std::make_shared<std::promise<SocketProbe>>();
    auto answer = result->get_future();
    std::thread([result, path] { result->set_value(probe_unix_socket(path)); }).detach();
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    CHECK(answer.get() == SocketProbe::served);
    for (int c : clients) close(c);
    close(listener);
}
