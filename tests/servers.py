"""Test servers: a free port on 127.0.0.1, and a launched web app that is always closed."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(demo, **launch_options) -> Iterator[str]:
    """``webapp.launch(demo)`` on 127.0.0.1 and a free port, in a background thread; yields the
    base URL and closes the server on the way out."""
    from captioner.webapp import launch

    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, **launch_options)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
