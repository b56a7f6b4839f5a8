// A stand-in for qemu-system-x86_64 in unit tests: relays its inherited QMP fd to a test's server.
//
// qshim spawns it exactly as it spawns QEMU (same argv, fd plan and signal handling). It
//  - writes what it inherited to $QSHIM_FAKE_REPORT (if set), as JSON: argv, which fds 0..63 are
//    open (and their inode), and its blocked and ignored signal masks;
//  - connects to the unix socket $QSHIM_FAKE_QMP and relays bytes between it and fd 3 (the QMP
//    socket in qshim's plan), so a scripted fake QMP server in the test talks to qshim;
//  - exits 0 when the server closes (QEMU's exit after `quit` or a guest power-off), and on
//    SIGTERM/SIGINT like QEMU, unless $QSHIM_FAKE_IGNORE_TERM is set; with $QSHIM_FAKE_STAY set,
//    the server closing only closes QMP and the process lives on (a QEMU whose monitor broke);
//  - keeps running when qshim closes its end of QMP, as QEMU does;
//  - with $QSHIM_FAKE_CRASH set, dies of SIGABRT when the server closes (a QEMU that crashes).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

std::string status_line(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0) return line.substr(line.find(':') + 1);
    return "?";
}

void report(const char* path, int argc, char** argv) {
    std::string out = "{\"argv\": [";
    for (int i = 0; i < argc; ++i) {
        std::string a;
        for (char c : std::string(argv[i]))
            a += c == '"' || c == '\\' ? std::string("\\") + c : std::string(1, c);
        out += (i ? ", \"" : "\"") + a + "\"";
    }
    out += "], \"fds\": {";
    bool first = true;
    for (int fd = 0; fd < 64; ++fd) {
        struct stat st {};
        if (fstat(fd, &st) != 0) continue;
        out += (first ? "\"" : ", \"") + std::to_string(fd) + "\": " + std::to_string(st.st_ino);
        first = false;
    }
    std::string blocked = status_line("SigBlk:"), ignored = status_line("SigIgn:");
    auto trim = [](std::string s) { return s.substr(s.find_first_not_of(" \t")); };
    out += "}, \"sigblk\": \"" + trim(blocked) + "\", \"sigign\": \"" + trim(ignored) + "\"}\n";
    std::ofstream(path) << out;
}

int connect_to(const char* path) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::perror("fake-qemu: connect");
        std::exit(1);
    }
    return s;
}

// Copies what is readable on `from` to `to`; false at end of stream.
bool pass(int from, int to) {
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0) return false;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, static_cast<size_t>(n - off));
        if (w <= 0) return true;  // the other side is gone; its own read will say so
        off += w;
    }
    return true;
}

void quit_like_qemu(int) { _exit(0); }

}  // namespace

int main(int argc, char** argv) {
    if (const char* path = std::getenv("QSHIM_FAKE_REPORT")) report(path, argc, argv);
    if (!std::getenv("QSHIM_FAKE_IGNORE_TERM")) {
        std::signal(SIGTERM, quit_like_qemu);
        std::signal(SIGINT, quit_like_qemu);
    } else {
        std::signal(SIGTERM, SIG_IGN);
    }
    const char* server = std::getenv("QSHIM_FAKE_QMP");
    if (!server) {
        std::fprintf(stderr, "fake-qemu: QSHIM_FAKE_QMP is not set\n");
        return 1;
    }
    int upstream = connect_to(server);
    const int qmp = 3;
    bool qmp_open = true;
    for (;;) {
        pollfd fds[2] = {{upstream, POLLIN, 0},
                         {qmp, static_cast<short>(qmp_open ? POLLIN : 0), 0}};
        if (poll(fds, 2, -1) < 0) continue;
        if (fds[0].revents && !pass(upstream, qmp)) {
            if (std::getenv("QSHIM_FAKE_CRASH")) std::abort();
            if (!std::getenv("QSHIM_FAKE_STAY")) return 0;  // the "QEMU" side ended: exit
            close(qmp);
            for (;;) pause();  // until a signal ends us
        }
        if (qmp_open && fds[1].revents && !pass(qmp, upstream)) {
            // qshim closed QMP: QEMU runs on. Tell the server, so its script can end.
            shutdown(upstream, SHUT_WR);
            qmp_open = false;
        }
    }
}
