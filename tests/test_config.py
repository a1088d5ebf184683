"""Configuration: the example documents every key with its default; bad input is located."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chainwarden.config import _SCHEMA, Config, ConfigError, config_from_mapping, load_config, parse_duration

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_example_loads_and_equals_defaults():
    """config.example.toml is valid and its values are exactly the built-in defaults."""
    loaded = load_config(str(EXAMPLE))
    defaults = Config()
    for attr, _ in _SCHEMA.values():
        assert getattr(loaded, attr) == getattr(defaults, attr), attr


def test_example_mentions_every_key():
    """Every configuration key appears in the example, set or commented."""
    text = EXAMPLE.read_text()
    sections = {}
    current = None
    for line in text.splitlines():
        header = re.match(r"^\[(\w+)\]", line)
        if header:
            current = header.group(1)
            continue
        key = re.match(r"^#?\s*(\w+)\s*=", line)
        if key and current:
            sections.setdefault(current, set()).add(key.group(1))
    for dotted in _SCHEMA:
        section, key = dotted.split(".")
        assert key in sections.get(section, set()), dotted


def test_errors_name_file_and_key():
    """Unknown keys and bad values are all reported, each with the file and dotted key."""
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"verify": {"warn_days": "x", "colour": 1}, "schedule": {"interval": "2 weeks"}}, "c.toml")
    message = str(info.value)
    assert "c.toml: verify.warn_days" in message
    assert "unknown key verify.colour" in message
    assert "schedule.interval" in message


def test_durations():
    """Durations accept numbers and unit strings, and reject the rest."""
    assert parse_duration(90) == 90 and parse_duration("15m") == 900 and parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_duration("soon")
    with pytest.raises(ValueError):
        parse_duration(True)


def test_submit_command_needs_placeholder():
    """A submit command without {json} is refused: it could never name the file."""
    with pytest.raises(ConfigError, match=r"\{json\}"):
        config_from_mapping({"regenerate": {"submit_command": ["/bin/true"]}}, "c.toml")


def test_unreadable_and_invalid_toml():
    """A missing file and broken TOML are both ConfigError with the path."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/chainwarden.toml")


def test_a_config_that_is_no_file_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO (which would block the reading forever) and a device such as /dev/zero (which would
    fill memory) are refused with the path, never read."""
    import os

    fifo = tmp_path / "chainwarden.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"config .*chainwarden\.toml: cannot read: not a regular file"):
        load_config(str(fifo))
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(str(zero))


def test_an_oversized_or_binary_config_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (1024 * 1024))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(str(big))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[verify]\nworkers = 1\n\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(binary))
