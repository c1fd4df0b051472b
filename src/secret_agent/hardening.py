"""No core dump of a process that holds values.

A core file is a copy of the process's memory: with `ulimit -c unlimited`, a SIGABRT of
the daemon wrote every value and the token to disk. `disable_core_dumps` closes that
twice, before any value or token is read:

1. `RLIMIT_CORE` soft limit 0. The hard limit is kept, so a child can raise its soft
   limit again (`ulimit -c unlimited` in the command, or `setrlimit`): children inherit
   the soft 0, which is the point, since `exec`'s command holds the values in its
   environment.
2. `prctl(PR_SET_DUMPABLE, 0)` (Linux): no core whatever the limit (a process that
   raises its own limit, or one whose limit another process raised with prlimit), and no
   ptrace attach or `/proc/PID/mem` / `environ` reading by other processes of the same
   user. execve resets it to 1 for the new program, so it protects this process only;
   the command that `exec` runs keeps the inherited soft limit 0 of step 1.

ctypes costs about 2 ms to import, so it is imported here, when prctl is called, and
never by importing this module. Elsewhere than Linux step 2 is a no-op.

This module must not import anything of ours.
"""

from __future__ import annotations

import resource
import sys
from typing import Final

PR_SET_DUMPABLE: Final = 4  # <linux/prctl.h>


def disable_core_dumps() -> None:
    """Steps (1) and (2) for this process.

    Raises:
        OSError: prctl refused (it never does on a Linux kernel; a seccomp filter could).
    """
    # (1)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    # (2)
    if sys.platform == "linux":
        _set_not_dumpable()


def _set_not_dumpable() -> None:
    import ctypes  # here, not at the top: 2 ms that only value-holding commands pay

    libc = ctypes.CDLL(None, use_errno=True)
    zero = ctypes.c_ulong(0)
    if libc.prctl(ctypes.c_int(PR_SET_DUMPABLE), zero, zero, zero, zero) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "cannot disable core dumps: prctl(PR_SET_DUMPABLE, 0) failed")
