"""The daemon's TOML configuration: defaults, validation with located errors, and duration parsing."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .regularfile import NotARegularFile, read_regular

DEFAULT_LISTEN = "127.0.0.1:9847"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and key."""


@dataclass(frozen=True, slots=True)
class Config:
    source: str | None = None
    watch_connections: tuple[str, ...] = ()
    watch_bundles: tuple[str, ...] = ()
    watch_poll_interval: float = 2.0
    watch_force_polling: bool = False
    schedule_interval: float = 3600.0
    schedule_jitter: float = 300.0
    verify_probe: bool = True
    verify_warn_days: int = 30
    verify_timeout: float = 10.0
    verify_concurrency: int = 32
    verify_trusted_roots: str = "certifi"
    verify_workers: int = 0  # 0: one process per usable CPU (large passes only)
    metrics_listen: str = DEFAULT_LISTEN
    metrics_tls_cert: str | None = None
    metrics_tls_key: str | None = None
    metrics_basic_auth_file: str | None = None
    state_dir: str = "/var/lib/chainwarden"
    regenerate_enabled: bool = False
    regenerate_intermediates_dir: str | None = None
    regenerate_trusted_roots: str = "certifi"
    regenerate_outbox: str | None = None  # default: <state dir>/outbox
    regenerate_include_leaf: bool = False
    regenerate_apply_at_lead: float = 7200.0
    regenerate_submit_command: tuple[str, ...] = ()
    regenerate_allow_private_aia: bool = False
    regenerate_aia_timeout: float = 10.0
    regenerate_aia_max_bytes: int = 1024 * 1024
    regenerate_retry_interval: float = 60.0
    regenerate_submit_timeout: float = 900.0
    log_level: str = "info"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def outbox(self) -> str:
        return self.regenerate_outbox or str(Path(self.state_dir) / "outbox")

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return parse_listen(self.metrics_listen)


# key path -> (Config attribute, kind). Kinds: str, bool, int, float, duration, strlist, path.
_SCHEMA: dict[str, tuple[str, str]] = {
    "watch.connections": ("watch_connections", "strlist"),
    "watch.bundles": ("watch_bundles", "strlist"),
    "watch.poll_interval": ("watch_poll_interval", "duration"),
    "watch.force_polling": ("watch_force_polling", "bool"),
    "schedule.interval": ("schedule_interval", "duration"),
    "schedule.jitter": ("schedule_jitter", "duration"),
    "verify.probe": ("verify_probe", "bool"),
    "verify.warn_days": ("verify_warn_days", "int"),
    "verify.timeout": ("verify_timeout", "duration"),
    "verify.concurrency": ("verify_concurrency", "int"),
    "verify.trusted_roots": ("verify_trusted_roots", "str"),
    "verify.workers": ("verify_workers", "int"),
    "metrics.listen": ("metrics_listen", "str"),
    "metrics.tls_cert": ("metrics_tls_cert", "str"),
    "metrics.tls_key": ("metrics_tls_key", "str"),
    "metrics.basic_auth_file": ("metrics_basic_auth_file", "str"),
    "state.dir": ("state_dir", "str"),
    "regenerate.enabled": ("regenerate_enabled", "bool"),
    "regenerate.intermediates_dir": ("regenerate_intermediates_dir", "str"),
    "regenerate.trusted_roots": ("regenerate_trusted_roots", "str"),
    "regenerate.outbox": ("regenerate_outbox", "str"),
    "regenerate.include_leaf": ("regenerate_include_leaf", "bool"),
    "regenerate.apply_at_lead": ("regenerate_apply_at_lead", "duration"),
    "regenerate.submit_command": ("regenerate_submit_command", "strlist"),
    "regenerate.allow_private_aia": ("regenerate_allow_private_aia", "bool"),
    "regenerate.aia_timeout": ("regenerate_aia_timeout", "duration"),
    "regenerate.aia_max_bytes": ("regenerate_aia_max_bytes", "int"),
    "regenerate.retry_interval": ("regenerate_retry_interval", "duration"),
    "regenerate.submit_timeout": ("regenerate_submit_timeout", "duration"),
    "log.level": ("log_level", "str"),
}

_LIMITS: dict[str, tuple[float, float]] = {
    "verify.warn_days": (0, 3650),
    "verify.timeout": (0.1, 300),
    "verify.concurrency": (1, 1024),
    "verify.workers": (0, 64),
    "schedule.interval": (10, 7 * 86400),
    "schedule.jitter": (0, 86400),
    "watch.poll_interval": (0.1, 3600),
    "regenerate.apply_at_lead": (3600, 30 * 86400),
    "regenerate.aia_timeout": (0.1, 300),
    "regenerate.aia_max_bytes": (1024, 64 * 1024 * 1024),
    "regenerate.retry_interval": (1, 86400),
    "regenerate.submit_timeout": (1, 86400),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> float:
    """Seconds from `90`, `2.5`, `"30s"`, `"15m"`, `"2h"`, `"1d"`."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "30s", "15m" or "2h", not a boolean')
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f'expected a duration such as "30s", "15m" or "2h", got {value!r}')


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def load_config(path: str | None) -> Config:
    """Defaults when `path` is None; otherwise the file's values, or ConfigError naming file and key."""
    if path is None:
        return Config()
    try:
        data, _ = read_regular(path, MAX_CONFIG_BYTES + 1)  # a FIFO or /dev/zero is refused, not read
    except NotARegularFile:
        raise ConfigError(f"config {path}: cannot read: not a regular file (a device, FIFO or socket)") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the path
        raise ConfigError(f"config {path!r}: cannot read: the path is not valid") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config {path}: larger than {MAX_CONFIG_BYTES} bytes; not a configuration file")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not UTF-8 text (byte offset {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML: {exc}") from None
    return config_from_mapping(raw, path)


MAX_CONFIG_BYTES = 1024 * 1024


def config_from_mapping(raw: dict[str, Any], source: str) -> Config:
    values: dict[str, Any] = {"source": source}
    errors: list[str] = []
    for section, table in raw.items():
        if not isinstance(table, dict):
            errors.append(f"config {source}: [{section}] must be a table")
            continue
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if dotted not in _SCHEMA:
                errors.append(f"config {source}: unknown key {dotted}")
                continue
            attr, kind = _SCHEMA[dotted]
            try:
                values[attr] = _convert(value, kind, dotted)
            except ValueError as exc:
                errors.append(f"config {source}: {dotted}: {exc}")
    if "metrics_listen" in values:
        try:
            parse_listen(values["metrics_listen"])
        except ValueError as exc:
            errors.append(f"config {source}: metrics.listen: {exc}")
    if bool(values.get("metrics_tls_cert")) != bool(values.get("metrics_tls_key")):
        errors.append(f"config {source}: metrics.tls_cert and metrics.tls_key go together")
    command = values.get("regenerate_submit_command", ())
    if command and not any("{json}" in part for part in command):
        errors.append(f"config {source}: regenerate.submit_command must contain the {{json}} placeholder")
    if values.get("log_level", "info") not in {"debug", "info", "warning", "error"}:
        errors.append(f"config {source}: log.level: expected debug, info, warning or error")
    if errors:
        raise ConfigError("\n".join(errors))
    return Config(**values)


def _convert(value: object, kind: str, dotted: str) -> object:
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a non-empty string, got {value!r}")
        return value
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError("expected a list of non-empty strings")
        return tuple(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        number: float = value
    else:
        number = parse_duration(value)
    low, high = _LIMITS.get(dotted, (float("-inf"), float("inf")))
    if not low <= number <= high:
        raise ValueError(
            f"{value!r} is out of range ({_fmt(low)} to {_fmt(high)}{' seconds' if kind == 'duration' else ''})"
        )
    return number


def _fmt(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)
