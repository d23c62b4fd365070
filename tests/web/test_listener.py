"""``web.listener``: closing a listener refuses new handshakes and serves (never resets) the queued ones."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from tenantsvc.web.listener import accept_pending_when_closing, refuse_new_handshakes


@pytest.fixture
def listening():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def test_after_refuse_new_handshakes_a_new_connection_is_not_completed(listening):
    queued = socket.create_connection(listening.getsockname(), timeout=2)  # handshake done before
    assert refuse_new_handshakes(SimpleNamespace(socket=listening))
    late = socket.socket()
    late.settimeout(0.5)
    with pytest.raises(socket.timeout):  # its SYN is dropped: no handshake, so nothing to reset later
        late.connect(listening.getsockname())
    late.close()
    accepted, _ = listening.accept()  # the connection queued before the filter is still there
    queued.sendall(b"x")
    assert accepted.recv(1) == b"x"
    accepted.close()
    queued.close()


def test_a_port_without_a_socket_is_left_alone():
    assert refuse_new_handshakes(SimpleNamespace()) is False


def test_the_accept_queue_is_drained_in_the_same_step_as_the_close():
    calls = []
    port = SimpleNamespace(connected=True, numberAccepts=1, doRead=lambda: calls.append(("accept", port.numberAccepts)),
                           connectionLost=lambda reason: calls.append(("close", reason)))
    accept_pending_when_closing(port)
    port.connectionLost("done")
    assert calls == [("accept", 4096), ("close", "done")]
