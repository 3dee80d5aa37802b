"""Child processes the commands start (the embedded broker, ``dev``'s worker): tied to their
parent's life, stopped by their pid."""

from __future__ import annotations

import signal
import subprocess


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): SIGTERM when the parent dies, however it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM, and SIGKILL if it has not exited within ``timeout_s``; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    return proc.returncode
