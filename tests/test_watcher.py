"""The watcher's log never names a folder that only a secrets value (secrets.client_cert) names."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from chainwarden.watcher import Watcher


def test_an_unwatchable_client_certificate_folder_is_not_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secure-client-certs"
    public = tmp_path / "pki"
    secret.mkdir()
    public.mkdir()
    watcher = Watcher(lambda folders: None, force_polling=True)
    watcher.start([])
    try:
        assert watcher._observer is not None

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise OSError(errno.EACCES, "Permission denied")

        watcher._observer.schedule = refuse  # type: ignore[method-assign]
        caplog.set_level(logging.WARNING, logger="chainwarden")
        watcher.set_folders([str(secret), str(public)], private=[str(secret)])
    finally:
        watcher.stop()
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot watch the folder of a client certificate (secrets.client_cert): Permission denied" in said
    assert f"cannot watch {public}: Permission denied" in said
    assert "secure-client-certs" not in said
