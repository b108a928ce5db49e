"""Set-up of the dask workers that a build starts on this machine (a dask preload module:
each worker runs :func:`dask_setup` when it starts, and again if dask restarts it)."""

from __future__ import annotations

import logging
import signal

HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat."
COMPUTE_FAILED = "Compute Failed"


def dask_setup(worker) -> None:
    """Ctrl-C reaches every process of the terminal's process group, but it is meant for the
    build process, which then stops the cluster; a worker that took it too would print a
    traceback of its own.

    A worker whose heartbeat is on its way when the cluster closes logs the closed connection
    with its traceback (about one cluster in 40 here): that is the end of a build, not an
    error, and the scheduler of a cluster the build starts lives in the build process, so a
    lost connection to it says nothing the build does not know.

    A task that fails with an error meant for the user (a write to a full disk) is logged by
    its worker with its traceback, and the build process, which gets the error back, says
    it as its one line: the worker's record is dropped. Other errors still show."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_logger = logging.getLogger("distributed.worker")
    for kind in (ClosedHeartbeat, UserErrorOfATask):
        if not any(isinstance(known, kind) for known in worker_logger.filters):
            worker_logger.addFilter(kind())


class ClosedHeartbeat(logging.Filter):
    """Drops the record of a heartbeat whose connection to the scheduler was closed."""

    def filter(self, record: logging.LogRecord) -> bool:
        from distributed.comm.core import CommClosedError

        if record.msg != HEARTBEAT_FAILED or not record.exc_info:
            return True
        return not isinstance(record.exc_info[1], CommClosedError)


class UserErrorOfATask(logging.Filter):
    """Drops the record of a task that failed with a :class:`TomobenchError`. dask logs the
    exception's ``repr``, which begins with its class's name: the names of tomobench's
    errors are matched (an error of another package by the same name would be dropped
    too; the build process still raises it). A record of any other form passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            not isinstance(record.msg, str)
            or not record.msg.startswith(COMPUTE_FAILED)
            or not isinstance(record.args, tuple)
            or len(record.args) < 4
        ):
            return True
        return str(record.args[3]).split("(", 1)[0] not in _user_error_names()


def _user_error_names() -> set[str]:
    from tomobench.errors import TomobenchError

    names, kinds = set(), [TomobenchError]
    while kinds:
        kind = kinds.pop()
        names.add(kind.__name__)
        kinds += kind.__subclasses__()
    return names
