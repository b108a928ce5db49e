"""What importing TensorFlow needs so that a command's output stays readable."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to /dev/null for a while.

    TensorFlow prints its start-up lines (oneDNN, "log messages before absl::InitializeLog")
    during import, before its log level applies; a command's error must stay one line.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == "0":
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
