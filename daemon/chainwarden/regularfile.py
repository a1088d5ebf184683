"""Read a regular file whole with plain system calls: a FIFO or a device is an error, never a wait."""

from __future__ import annotations

import errno
import os
import stat


class NotARegularFile(OSError):
    """The path names a device, FIFO or socket, which is never read."""


_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_regular(path: str, limit: int) -> tuple[bytes, os.stat_result]:
    """At most `limit` bytes of the regular file `path`, and its stat as it was opened (before the read).

    IsADirectoryError for a folder, NotARegularFile for anything else that is not a regular file
    (O_NONBLOCK keeps a FIFO from blocking the open), OSError as the system gives it otherwise.
    """
    fd = os.open(path, _FLAGS)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, f"not a regular file (mode {stat.S_IFMT(info.st_mode):o})", path)
        chunks: list[bytes] = []
        # The whole file in the first read, sized to it: a fixed 1 MiB request allocates (and, with
        # the daemon's mmap threshold, maps and unmaps) a megabyte for every file of a few KiB.
        step = info.st_size + 1
        # Up to an empty read: /proc files and FUSE mounts may answer short reads before their end.
        while limit > 0 and (chunk := os.read(fd, min(limit, step))):
            chunks.append(chunk)
            limit -= len(chunk)
            step = 1 << 16
        return b"".join(chunks), info
    finally:
        os.close(fd)
