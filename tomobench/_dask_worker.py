"""Set-up of the dask workers that a build starts on this machine (a dask preload module:
each worker runs :func:`dask_setup` when it starts, and again if dask starts it anew)."""

from __future__ import annotations

import signal


def dask_setup(worker) -> None:
    """Ctrl-C reaches every process of the terminal's process group, but it is meant for the
    build process, which then stops the cluster; a worker that took it too would print a
    traceback of its own."""
    del worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
