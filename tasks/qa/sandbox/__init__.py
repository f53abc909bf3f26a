"""Sandbox back-ends behind one interface and a registry.

get_sandbox("auto")   docker when an engine answers (and the image is there), else the
                      namespace back-end (bubblewrap), else SandboxUnavailable: tests never
                      run unsandboxed.
"""

from __future__ import annotations

from schemas.errors import ConfigError, SandboxUnavailable
from schemas.settings import SandboxSettings, get_sandbox_settings
from tasks.qa.sandbox.base import Mount, OutputCap, RunResult, RunSpec, Sandbox
from tasks.qa.sandbox.docker import DockerSandbox
from tasks.qa.sandbox.namespace import NamespaceSandbox

__all__ = ["SANDBOXES", "Mount", "OutputCap", "RunResult", "RunSpec", "Sandbox", "get_sandbox", "register_sandbox"]

SANDBOXES: dict[str, type[Sandbox]] = {}


def register_sandbox(cls: type[Sandbox]) -> type[Sandbox]:
    SANDBOXES[cls.name] = cls
    return cls


register_sandbox(DockerSandbox)
register_sandbox(NamespaceSandbox)


def get_sandbox(name: str | None = None, settings: SandboxSettings | None = None) -> Sandbox:
    """The back-end called `name` (default: PRT_SANDBOX), ready to run, or a clear error."""
    settings = settings or get_sandbox_settings()
    name = name or settings.backend
    if name == "auto":
        reasons = []
        for candidate in ("docker", "namespace"):
            why = SANDBOXES[candidate].available(settings)
            if why is None:
                return SANDBOXES[candidate](settings)
            reasons.append(f"{candidate}: {why}")
        raise SandboxUnavailable("no sandbox back-end can run here, so no tests will run. " + "; ".join(reasons), backend="auto")
    if name not in SANDBOXES:
        raise ConfigError(f"unknown sandbox {name!r}; known: auto, {', '.join(sorted(SANDBOXES))}")
    why = SANDBOXES[name].available(settings)
    if why:
        raise SandboxUnavailable(f"the {name} sandbox cannot run here: {why}", backend=name)
    return SANDBOXES[name](settings)
