"""Free ports for the servers a test, a benchmark or `kezek run` starts:
drawn where no outgoing connection can take them, and promised to one
caller on the machine at a time."""
from __future__ import annotations

import socket
import time
from contextlib import contextmanager

import pytest

from kezek.infra import procs
from kezek.infra.procs import free_port


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    """A ledger of our own, and free_port trying the candidates `order` holds."""
    monkeypatch.setattr(procs.tempfile, "tempdir", str(tmp_path))
    order: list[int] = []
    monkeypatch.setattr(procs.random, "sample", lambda population, k: [p for p in order if p in population])
    return tmp_path / "kezek-ports", order


def _candidates() -> list[int]:
    """Three ports in a row on which nothing listens, below the ephemeral range."""
    for first in range(procs.LOWEST_PORT + 500, procs.ephemeral_ports()[0] - 10, 7):
        if all(procs._bindable(p) for p in range(first, first + 4)):
            return [first, first + 1, first + 2]
    raise AssertionError("no three free ports in a row")


def test_a_free_port_lies_below_the_kernels_ephemeral_range_where_no_outgoing_connection_takes_it():
    low = procs.ephemeral_ports()[0]
    ports = [free_port() for _ in range(50)]
    assert all(procs.LOWEST_PORT <= port < low for port in ports)


def test_a_port_promised_to_one_caller_goes_to_no_other_until_the_promise_ends(ledger):
    path, order = ledger
    order += _candidates()
    first = free_port()
    assert free_port() == first + 1       # the first is promised, though nothing listens on it yet
    path.write_text(f"{first} {time.time() - 1:.0f}\n{first + 1} {time.time() + 60:.0f}\n")
    assert free_port() == first           # its promise ended; the second's holds


@contextmanager
def listening(port: int):
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        yield


def test_a_port_something_listens_on_is_never_handed_out(ledger):
    _, order = ledger
    order += _candidates()
    with listening(order[0]):
        assert free_port() == order[1]


def test_a_span_is_handed_out_only_when_every_port_of_it_is_free(ledger):
    _, order = ledger
    order += _candidates()
    with listening(order[1]):
        assert free_port(span=2) == order[2]  # the first candidate's next port is taken
    assert free_port(span=2) == order[0]      # free again, and nothing promised of it


def test_a_ledger_line_that_is_not_a_promise_is_passed_over(ledger):
    path, order = ledger
    order += _candidates()
    path.write_text(f"garbage\n{order[0]} soon\n\n")
    assert free_port() == order[0]
    assert path.read_text().split()[0] == str(order[0])


def test_where_the_ephemeral_range_leaves_no_room_the_kernel_chooses_and_a_span_is_still_free_in_a_row(monkeypatch):
    monkeypatch.setattr(procs, "ephemeral_ports", lambda: (1024, 60999))
    asked: list[int] = []

    def bindable(port: int) -> bool:      # the next port of the kernel's first choice is taken
        asked.append(port)
        return len(asked) > 1

    monkeypatch.setattr(procs, "_bindable", bindable)
    port = free_port(span=2)
    assert len(asked) == 2 and port + 1 == asked[1]     # the first choice refused, the second taken
