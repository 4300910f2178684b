"""Where the server's URL and the API key come from, first match wins:

1. the arguments (``--url``, ``--api-key``; ``Client(url, api_key)``);
2. the environment: ``QUICKBG_URL``, ``QUICKBG_API_KEY``;
3. a TOML config file: ``QUICKBG_CONFIG`` if set, else ``$XDG_CONFIG_HOME/quickbg/config.toml``
   (``~/.config/quickbg/config.toml``), with ``url = "..."`` and ``api_key = "..."``.

The URL defaults to ``http://127.0.0.1:8000`` (``make run``); the key has no default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from quickbg_client.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    if os.environ.get("QUICKBG_CONFIG"):
        return Path(os.environ["QUICKBG_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "quickbg" / "config.toml"


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str


def _file_values() -> dict:
    path = config_path()
    if not path.is_file():
        if os.environ.get("QUICKBG_CONFIG"):
            raise ConfigError(f"QUICKBG_CONFIG names {path}, which does not exist")
        return {}
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    unknown = set(values) - {"url", "api_key"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)} (allowed: url, api_key)")
    return values


def resolve(url: str | None = None, api_key: str | None = None) -> Settings:
    """The URL and key from the arguments, the environment or the config file."""
    file_values: dict | None = None

    def pick(given: str | None, env: str, key: str) -> str | None:
        nonlocal file_values
        if given:
            return given
        if os.environ.get(env):
            return os.environ[env]
        if file_values is None:
            file_values = _file_values()
        value = file_values.get(key)
        return str(value) if value else None

    resolved_url = pick(url, "QUICKBG_URL", "url") or DEFAULT_URL
    resolved_key = pick(api_key, "QUICKBG_API_KEY", "api_key")
    if not resolved_key:
        raise ConfigError(
            "no API key: pass --api-key, set QUICKBG_API_KEY, or put api_key = \"...\" in "
            f"{config_path()} (create a key on the web page's API keys panel or with "
            "POST /api/v1/api-keys)")
    if not resolved_url.startswith(("http://", "https://")):
        raise ConfigError(f"the URL must start with http:// or https://, not {resolved_url!r}")
    return Settings(url=resolved_url.rstrip("/"), api_key=resolved_key)
