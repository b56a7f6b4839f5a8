#!/usr/bin/env python3
"""tap_exec.py NAME ADDR/PREFIX FD -- ARGV...: creates tap NAME (in the current network namespace),
gives it ADDR/PREFIX, brings it up, and execs ARGV with the tap's fd at FD, the way a CNI plugin or
a controller hands a tap over. Run it inside a namespace the test made (ip netns exec)."""
import fcntl
import os
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def main():
    name, addr, fd, sep, *argv = sys.argv[1:]
    assert sep == "--", __doc__
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    subprocess.run(["ip", "addr", "add", addr, "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    target = int(fd)
    os.dup2(tun, target)  # dup2 leaves the copy inheritable
    os.close(tun)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
