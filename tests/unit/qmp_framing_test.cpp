// LineFramer: splitting the QMP byte stream into lines, across partial reads, within a bound.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "qmp/framing.hpp"

using qshim::qmp::detail::LineFramer;
using Status = LineFramer::Status;

namespace {

std::vector<std::string> drain(LineFramer& f) {
    std::vector<std::string> out;
    std::string line;
    while (f.next(line) == Status::line) out.push_back(line);
    return out;
}

}  // namespace

TEST_CASE("framer splits lines and strips CRLF", "[qmp][framing]") {
    LineFramer f(1024);
    f.append("{\"a\":1}\r\n{\"b\":2}\n\r\n\n{\"c\"");
    CHECK(drain(f) == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"});
    CHECK(f.pending_bytes() == 4);
    f.append(":3}\r\n");
    CHECK(drain(f) == std::vector<std::string>{"{\"c\":3}"});
    CHECK(f.pending_bytes() == 0);
}

TEST_CASE("framer reassembles a line delivered one byte at a time", "[qmp][framing]") {
    LineFramer f(1024);
    const std::string msg = "{\"return\": {\"status\": \"running\"}, \"id\": \"qshim-1\"}\r\n";
    std::vector<std::string> lines;
    for (char c : msg) {
        f.append(std::string_view(&c, 1));
        auto got = drain(f);
        lines.insert(lines.end(), got.begin(), got.end());
    }
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] + "\r\n" == msg);
}

TEST_CASE("framer keeps the CR of a line split between CR and LF", "[qmp][framing]") {
    LineFramer f(16);
    f.append("0123456789abcdef\r");  // exactly at the bound, its LF not yet here
    std::string line;
    CHECK(f.next(line) == Status::incomplete);
    f.append("\n");
    REQUIRE(f.next(line) == Status::line);
    CHECK(line == "0123456789abcdef");
}

TEST_CASE("framer accepts a line at the bound and refuses one byte more", "[qmp][framing]") {
    std::string line;
    SECTION("complete line at the bound") {
        LineFramer f(8);
        f.append("12345678\n");
        REQUIRE(f.next(line) == Status::line);
        CHECK(line == "12345678");
    }
    SECTION("complete line over the bound") {
        LineFramer f(8);
        f.append("123456789\n");
        CHECK(f.next(line) == Status::too_long);
    }
    SECTION("an unfinished line over the bound fails before its end arrives") {
        LineFramer f(8);
        f.append("1234567");
        CHECK(f.next(line) == Status::incomplete);
        f.append("89a");
        CHECK(f.next(line) == Status::too_long);
    }
    SECTION("the failure is sticky: no line is trusted afterwards") {
        LineFramer f(8);
        f.append("0123456789\n{}\n");
        CHECK(f.next(line) == Status::too_long);
        f.append("{}\n");
        CHECK(f.next(line) == Status::too_long);
    }
    SECTION("lines before an oversized one are still delivered") {
        LineFramer f(8);
        f.append("{}\n0123456789\n");
        REQUIRE(f.next(line) == Status::line);
        CHECK(line == "{}");
        CHECK(f.next(line) == Status::too_long);
    }
}

TEST_CASE("framer handles many lines across many reads without growing", "[qmp][framing]") {
    LineFramer f(64);
    std::string stream;
    for (int i = 0; i < 1000; ++i) stream += "{\"n\": " + std::to_string(i) + "}\r\n";
    std::vector<std::string> lines;
    for (std::size_t pos = 0; pos < stream.size(); pos += 37) {
        f.append(std::string_view(stream).substr(pos, 37));
        auto got = drain(f);
        lines.insert(lines.end(), got.begin(), got.end());
        CHECK(f.pending_bytes() < 37 + 64);
    }
    REQUIRE(lines.size() == 1000);
    CHECK(lines[999] == "{\"n\": 999}");
}
