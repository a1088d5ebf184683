"""Watch folders for changes (inotify, or polling when inotify cannot be had) and report folder names only."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("chainwarden.watch")

# Called with the folders in which something happened; the receiver compares content itself.
ChangeSink = Callable[[set[str]], None]


class _Handler(FileSystemEventHandler):
    """Never raises: an exception here would silently kill watchdog's thread for good."""

    def __init__(self, sink: ChangeSink) -> None:
        self._sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.event_type in ("opened", "closed_no_write"):
                return
            folders = set()
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if not raw:
                    continue
                path = os.fsdecode(raw)
                folders.add(os.path.dirname(path))
                if event.is_directory:
                    folders.add(path)  # a watched folder itself was created, moved or deleted
            self._sink(folders)
        except Exception:  # noqa: BLE001
            log.exception("file event could not be handled; later events still are")


class Watcher:
    """Keeps a watch on every wanted folder, and on its parent so a deleted folder is noticed when it returns.

    Threads: watchdog's dispatch thread only hands folder names to the sink. Scheduling and
    unscheduling happen on the caller's (the daemon worker's) thread alone, in `set_folders` and
    `health_check`: taking our lock inside watchdog's callback while holding it around
    `observer.schedule` would deadlock against watchdog's own lock.
    """

    def __init__(self, sink: ChangeSink, *, force_polling: bool = False, poll_interval: float = 2.0) -> None:
        self._sink = sink
        self._handler = _Handler(sink)
        self._force_polling = force_polling
        self._poll_interval = poll_interval
        self._wanted: set[str] = set()
        self._private: set[str] = set()  # folders no log line may name
        self._watches: dict[str, ObservedWatch] = {}
        self._observer: BaseObserver | None = None
        self.mode = "polling" if force_polling else "inotify"
        self.fallback_reason: str | None = None

    def start(self, folders: Iterable[str], *, private: Iterable[str] = ()) -> None:
        self._observer = self._new_observer()
        self._observer.start()
        self.set_folders(folders, private=private)

    def _new_observer(self) -> BaseObserver:
        if self._force_polling:
            self.mode = "polling"
            return PollingObserver(timeout=self._poll_interval)
        return Observer()

    def set_folders(self, folders: Iterable[str], *, private: Iterable[str] = ()) -> set[str]:
        """Watch exactly these folders (and their parents); returns the folders newly (re)armed.
        `private` folders (and their parents) are never named in a log line: a secrets value names them."""
        self._wanted = {os.path.abspath(f) for f in folders}
        hidden = {os.path.abspath(f) for f in private}
        self._private = hidden | {os.path.dirname(f) for f in hidden}
        targets = set()
        for folder in self._wanted:
            targets.add(folder)
            parent = os.path.dirname(folder)
            if parent and parent != folder:
                targets.add(parent)
        # A watched folder that vanished lost its watch with it; drop it so it can be re-armed.
        for stale in [f for f in self._watches if f not in targets or not os.path.isdir(f)]:
            self._unschedule(stale)
        armed = set()
        for target in sorted(targets):
            if self._ensure(target):
                armed.add(target)
        return armed

    def _ensure(self, folder: str) -> bool:
        if folder in self._watches or not os.path.isdir(folder) or self._observer is None:
            return False
        try:
            self._watches[folder] = self._observer.schedule(self._handler, folder, recursive=False)
        except OSError as exc:
            if self.mode == "inotify":
                self._fall_back_to_polling(exc)
                return self._ensure(folder)
            shown = "the folder of a client certificate (secrets.client_cert)" if folder in self._private else folder
            log.warning("cannot watch %s: %s", shown, exc.strerror or exc)
            return False
        return True

    def _unschedule(self, folder: str) -> None:
        watch = self._watches.pop(folder, None)
        if watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                pass

    def _fall_back_to_polling(self, exc: OSError) -> None:
        """inotify is out of instances or watches (or unsupported here): poll instead, without stopping."""
        self.fallback_reason = f"inotify unavailable ({exc.strerror or exc}); polling every {self._poll_interval:g} s"
        log.warning("%s", self.fallback_reason)
        old = self._observer
        self._watches.clear()
        self.mode = "polling"
        self._observer = PollingObserver(timeout=self._poll_interval)
        self._observer.start()
        if old is not None:
            try:
                old.stop()
            except Exception:  # noqa: BLE001 - a broken inotify observer may fail to stop
                pass

    def health_check(self) -> None:
        """Re-arm folders that came back while no event told us; look inside any re-armed one."""
        armed = self.set_folders(self._wanted)
        if armed:
            self._sink(armed)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


def folders_for(paths: Iterable[str]) -> set[str]:
    """The folders to watch for a set of files and folders of interest."""
    out = set()
    for path in paths:
        p = Path(path)
        out.add(str(p if p.is_dir() else p.parent))
    return out
