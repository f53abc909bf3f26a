"""Whether `prt` runs a job as a Prefect flow run (tracked) or as plain Python.

Tracked when a Prefect API is configured, so the run shows in its UI as a deployment's would;
otherwise plain: Prefect with no API starts a temporary server for every process (6-10 s), and
even `import prefect` costs a second, more than `prt ingest` of an empty inbox takes without it.

Deciding must not import Prefect, so this reads where Prefect 3 reads PREFECT_API_URL from,
highest first: the environment, `.env` and `prefect.toml` (`[api] url`) in the working folder,
`[tool.prefect.api] url` in its pyproject.toml, and the active profile of the profiles file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

__all__ = ["prefect_api_url", "tracked"]


def tracked(track: Literal["auto", "always", "never"]) -> bool:
    """The PRT_TRACK setting applied: always, never, or (auto) when a Prefect API is configured."""
    return track == "always" or (track == "auto" and prefect_api_url() is not None)


def prefect_api_url() -> str | None:
    """The Prefect API URL Prefect would use here, or None when none is configured."""
    if "PREFECT_API_URL" in os.environ:
        return os.environ["PREFECT_API_URL"] or None
    for found in (
        _dotenv(Path(".env")).get("PREFECT_API_URL"),
        _get(_toml(Path("prefect.toml")), "api", "url"),
        _get(_toml(Path("pyproject.toml")), "tool", "prefect", "api", "url"),
    ):
        if found:
            return str(found)
    if _test_mode():  # Prefect ignores profiles in its test mode
        return None
    profiles = _toml(_profiles_path())
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    url = _get(profiles, "profiles", str(active), "PREFECT_API_URL")
    return str(url) if url else None


def _profiles_path() -> Path:
    if path := os.environ.get("PREFECT_PROFILES_PATH"):
        return Path(path)
    home = os.environ.get("PREFECT_HOME") or "~/.prefect"
    return Path(home).expanduser() / "profiles.toml"


def _test_mode() -> bool:
    names = ("PREFECT_TEST_MODE", "PREFECT_UNIT_TEST_MODE", "PREFECT_TESTING_UNIT_TEST_MODE", "PREFECT_TESTING_TEST_MODE")
    return any(os.environ.get(n) for n in names)


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):  # absent or unreadable: Prefect would not use it either
        return {}


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _dotenv(path: Path) -> dict[str, str]:
    """`NAME=value` lines (optionally `export`ed, quoted); enough for the one name asked for."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not name.startswith("#"):
            out[name.strip()] = value.strip().strip("'\"")
    return out
