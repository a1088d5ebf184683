"""The one reader of regular files: whole content, short reads included; never a wait on a FIFO."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chainwarden import regularfile
from chainwarden.regularfile import NotARegularFile, read_regular


def test_reads_the_whole_file_and_its_stat(tmp_path: Path) -> None:
    """The bytes, and the stat of the file as it was opened."""
    path = tmp_path / "bundle.pem"
    path.write_bytes(b"x" * 200_000)
    data, info = read_regular(str(path), 1 << 20)
    assert data == b"x" * 200_000 and info.st_size == 200_000 and info.st_ino == path.stat().st_ino


def test_short_reads_before_the_end_are_read_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files that answer in short pieces (/proc, FUSE with direct_io) are read to their real end."""
    path = tmp_path / "pieces"
    path.write_bytes(bytes(range(256)) * 40)
    real_read = os.read
    monkeypatch.setattr(regularfile.os, "read", lambda fd, n: real_read(fd, min(n, 97)))
    assert read_regular(str(path), 1 << 20)[0] == bytes(range(256)) * 40


def test_proc_files_are_read_whole() -> None:
    """A /proc file reports size 0 and comes in pieces: all of it is read all the same."""
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs Linux /proc")
    data, info = read_regular("/proc/self/maps", 1 << 24)
    assert info.st_size == 0 and data.count(b"\n") > 10 and data.endswith(b"\n")


def test_at_most_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"y" * 10_000)
    assert len(read_regular(str(path), 4_097)[0]) == 4_097


def test_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    """A FIFO with no writer would block a plain open(): it is refused at once."""
    fifo = tmp_path / "conns.json"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile):
        read_regular(str(fifo), 1024)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        read_regular(str(tmp_path), 1024)
