"""Typed configs that load from and save to YAML.

Every stage has a config class derived from :class:`Config` (a pydantic model). The CLI builds
it from flags or a YAML file, the widget from its form, and both hand the same object to the
same job. Unknown keys are an error, so a typo in a YAML file is caught before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    """Base of all stage configs: validated on assignment, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str | os.PathLike | None = None) -> C:
        """Validate ``data``; errors name ``source`` (a file) and each bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
            )
            raise InputError(f"invalid {cls.__name__}: {problems}", path=source) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | os.PathLike) -> C:
        """Load a config from a YAML file."""
        return cls.from_dict(read_yaml(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (paths as strings), ready for YAML or a checkpoint."""
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write the config to ``path`` atomically; returns the path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path=path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML ({err})", path=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping at the top level, got {type(data).__name__}", path=path)
    return data
