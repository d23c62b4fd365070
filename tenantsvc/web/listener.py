"""Closing a TCP listener without resetting a single client (the last step of the SIGTERM drain).

Closing a listening socket resets every connection still in the kernel's accept queue, and Twisted's
``stopListening`` stops accepting at once but closes the socket a reactor turn later: a client whose
handshake completed in between saw "connected", sent its request and got a reset. So:

1. ``refuse_new_handshakes``: a socket filter (classic BPF, Linux) on the listening socket drops new
   SYNs. Handshakes already under way still complete (their ACKs pass) and are accepted as usual; a new
   client's SYN goes unanswered, it retransmits (after ~1 s), finds the port closed and is refused — a
   clean refusal on a new connection, which every client and load balancer handles.
2. after ``HANDSHAKE_GRACE_S``, ``accept_pending_when_closing``: ``stopListening`` with the accept queue
   drained in the same step as the close, so nothing is left in it to reset.

Without the filter (another OS, another transport) step 2 alone still shrinks the window to microseconds.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Any

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
# Long enough for a handshake whose SYN-ACK is already out to complete (one round trip).
HANDSHAKE_GRACE_S = 0.25
ACCEPT_ALL_AT_CLOSE = 4096  # at least the kernel's default somaxconn

# ldb [13] (TCP flags: the filter sees the TCP header); jset #SYN → drop; else accept.
_DROP_SYN = ((0x30, 0, 0, 13), (0x45, 0, 1, 0x02), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF))


def refuse_new_handshakes(port: Any) -> bool:
    """Make ``port``'s socket drop new SYNs from now on; False if that is not possible here."""
    sock = getattr(port, "socket", None)
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in _DROP_SYN))
    fprog = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def accept_pending_when_closing(port: Any) -> None:
    """Make ``port`` accept everything the kernel has queued right before its socket closes.

    Call before ``stopListening``; connections accepted then are served (with ``Connection: close``).
    """
    accept, close = getattr(port, "doRead", None), getattr(port, "connectionLost", None)
    if not (callable(accept) and callable(close)):
        return

    def accept_then_close(reason: Any) -> None:
        if getattr(port, "connected", False):
            # Twisted's Port accepts at most ``numberAccepts`` per call, which it shrinks to what the last
            # call found; the accept loop itself stops when the queue is empty.
            port.numberAccepts = max(getattr(port, "numberAccepts", 0), ACCEPT_ALL_AT_CLOSE)
            accept()
        close(reason)

    port.connectionLost = accept_then_close
