"""Announce microtask phases to Petri from any exec or http function (Python 3, stdlib only).

Petri gives the function's program a socket on the fd named by PETRI_MICROTASK_FD
(3). A phase is announced with one line, `NAME\n` (exec: for the invocation the
process serves) or `INVOCATION_ID NAME\n` (http: the id from the request's
x-petri-invocation-id header); Petri answers `ok INVOCATION_ID NAME\n` once the
phase may run (its CPU class had room), or `error REASON\n`. A phase ends when
the next one begins or the invocation ends.

    from petri_microtask import microtask
    microtask("read")      # blocks until the "read" phase may run
    data = fetch()
    microtask("sort")
    ...
"""

import os
import re

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_fd = None
_pending = b""


class MicrotaskError(RuntimeError):
    """Petri refused an announcement (bad name, no such invocation in flight)."""


def _channel():
    global _fd
    if _fd is None:
        value = os.environ.get("PETRI_MICROTASK_FD")
        if value is None:
            raise MicrotaskError("not running under Petri: PETRI_MICROTASK_FD is not set")
        _fd = int(value)
    return _fd


def _read_line(fd):
    global _pending
    while b"\n" not in _pending:
        chunk = os.read(fd, 4096)
        if not chunk:
            raise MicrotaskError("Petri closed the microtask channel")
        _pending += chunk
    line, _, _pending = _pending.partition(b"\n")
    return line.decode("utf-8")


def microtask(name, invocation_id=None):
    """Begins phase `name` and returns once Petri lets it run.

    `invocation_id` is needed by http servers (one process serves every
    invocation); exec commands serve one and may leave it out.
    """
    if not _NAME.match(name):
        raise ValueError("a microtask name is 1-64 characters of A-Za-z0-9_.:-")
    fd = _channel()
    line = name if invocation_id is None else f"{invocation_id} {name}"
    os.write(fd, (line + "\n").encode("utf-8"))
    answer = _read_line(fd)
    if not answer.startswith("ok "):
        raise MicrotaskError(answer)
