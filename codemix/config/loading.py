"""Typed YAML loading: a file merged onto a dataclass schema, so a misspelt key or a wrong type is an
error that names the key and the file, before any compute is spent."""

from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from yaml import YAMLError

from codemix.errors import CodemixError, ConfigError

T = TypeVar("T")


def read_yaml(path: str | Path) -> DictConfig:
    """Parse one YAML file into a DictConfig; a missing, unreadable or binary file, or bad YAML, is a
    one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        cfg = OmegaConf.load(path)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason}); expected YAML") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read: {err.strerror}") from err
    except (YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(err)}") from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(cfg).__name__}")
    return cfg


def merge_typed(schema: type[T], *layers: tuple[Any, str]) -> T:
    """Merge (config, origin) layers onto `schema` in order and return the schema's instance.

    `origin` names where a layer came from (a file path, "command line") so an error can say which
    layer held the bad key or value."""
    if not is_dataclass(schema):
        raise TypeError(f"{schema} is not a dataclass")
    merged = OmegaConf.structured(schema)
    for layer, origin in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            key = getattr(err, "full_key", None) or "?"
            raise ConfigError(f"{origin}: key '{key}': {_reason(err)}") from err
    origins = ", ".join(origin for _, origin in layers)
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"{origins}: key '{key}': {_reason(err)}") from err
    except CodemixError as err:  # a schema's own __post_init__ validation: say which files fed it
        raise ConfigError(f"{origins}: {err}") from err


def load_typed(schema: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Load one YAML file onto `schema`, then apply `key=value` command-line overrides."""
    layers: list[tuple[Any, str]] = [(read_yaml(path), str(path))]
    if overrides:
        layers.append((OmegaConf.from_dotlist(list(overrides)), "command line"))
    return merge_typed(schema, *layers)


def _reason(err: OmegaConfBaseException) -> str:
    return str(err).splitlines()[0]


def _one_line(err: Exception) -> str:
    """A YAML parser's message (problem, then where, over several lines) as one line."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
