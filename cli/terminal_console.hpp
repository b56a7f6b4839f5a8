// `qshim run --console` on a terminal: the terminal in raw mode, every key to the guest (Ctrl-C
// too, as on a serial line), the guest's output to stdout, and Ctrl-] to stop the VM.
#pragma once

#include <termios.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <optional>
#include <qshim/error.hpp>
#include <qshim/vm.hpp>
#include <string>

namespace qshim::cli {

// The key that leaves the console: Ctrl-] (0x1d), as telnet and virsh console use.
inline constexpr char console_escape = 0x1d;

class TerminalConsole {
  public:
    // `on_escape` runs when Ctrl-] is typed.
    TerminalConsole(boost::asio::any_io_executor ex, Vm& vm, std::function<void()> on_escape);
    ~TerminalConsole();  // the terminal as it was
    TerminalConsole(const TerminalConsole&) = delete;
    TerminalConsole& operator=(const TerminalConsole&) = delete;

    // Attaches to the VM's console (VmOptions::own_console) and puts the terminal in raw mode.
    Result<void> start();
    // Detaches and gives the terminal back; also done when the console ends.
    void stop();

  private:
    void read_keys();
    void on_keys(const char* data, size_t size);

    Vm& vm_;
    std::function<void()> on_escape_;
    boost::asio::posix::stream_descriptor input_;
    std::optional<termios> saved_;  // the terminal's settings, while raw
    int saved_flags_ = -1;          // stdin's file status flags (shared with the shell)
    std::optional<std::size_t> attached_;
    bool escaped_ = false;
    std::string pending_;  // typed, not yet sent to the guest
    bool writing_ = false;
};

}  // namespace qshim::cli
