"""Settings from the environment: each dataclass field says which variable sets it and what it means.

    port: int = setting(8080, "PORT", "port the proxy listens on")

`values_from_env(Settings, os.environ)` reads every field that names a variable, parsed by the field's
type; a variable that is unset or empty leaves the default. `describe(Settings)` lists them for people.
A settings dataclass derives from EnvSettings for its `from_env` and `replace`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, TypeVar

Env = Mapping[str, str]
S = TypeVar("S", bound="EnvSettings")


class EnvSettings:
    """The loader of a frozen settings dataclass: built from the environment in one place, changed by copy."""

    @classmethod
    def from_env(cls: type[S], env: Env | None = None) -> S:
        """Build settings from environment variables (docs/api.md, Settings); `env` defaults to os.environ.

        Raises:
            ValueError: a variable that should be a number or a boolean is not (or the class's own checks fail).
        """
        return cls(**values_from_env(cls, os.environ if env is None else env))

    def replace(self: S, **changes: Any) -> S:
        """A copy with `changes` (field names), checked as a new value is."""
        return dataclasses.replace(self, **changes)


def setting(default: Any, env: str | None, help: str, **kwargs: Any) -> Any:
    """A dataclass field set by variable `env` (None: only code and tests set it), described by `help`."""
    return dataclasses.field(default=default, metadata={"env": env, "help": help}, **kwargs)


def values_from_env(cls: type, env: Env) -> dict[str, Any]:
    """The fields of dataclass `cls` whose variable is set in `env`, parsed.

    Raises:
        ValueError: a variable that should be a number or a boolean is not.
    """
    values = {}
    for f in dataclasses.fields(cls):
        name = f.metadata.get("env")
        if name is None:
            continue
        value = _parser(f)(env, name)
        if value is not None:
            values[f.name] = value
    return values


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every field of `cls` set from the environment."""
    return [(f.metadata["env"], repr(f.default), f.metadata["help"])
            for f in dataclasses.fields(cls) if f.metadata.get("env")]


def _parser(f: dataclasses.Field) -> Callable[[Env, str], Any]:
    kind = str(f.type).split("|")[0].strip()
    try:
        return _PARSERS[kind]
    except KeyError:
        raise TypeError(f"setting {f.name}: no parser for type {f.type}") from None


def env_str(env: Env, name: str) -> str | None:
    return env.get(name) or None


def env_list(env: Env, name: str) -> tuple[str, ...] | None:
    """A comma-separated list, items stripped and empty ones dropped."""
    raw = env.get(name)
    if raw is None:
        return None
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def env_int(env: Env, name: str) -> int | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from err


def env_float(env: Env, name: str) -> float | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be a number, got {raw!r}") from err


def env_bool(env: Env, name: str) -> bool | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


_PARSERS: dict[str, Callable[[Env, str], Any]] = {
    "str": env_str, "int": env_int, "float": env_float, "bool": env_bool, "tuple[str, ...]": env_list,
}
