"""Where the readers of files look for a data set: ``data_dir`` alone if given, else
``$MMCR_DATA_DIR``, then the system folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mmcr.data.registry import DatasetInfo

__all__ = ["DATA_DIR_ENV", "format_dirs", "search_dirs"]

#: Environment variable naming a directory to search for data sets.
DATA_DIR_ENV = "MMCR_DATA_DIR"


def search_dirs(
    data_dir: str | Path | None, info: DatasetInfo, system_dirs: Sequence[Path] = ()
) -> list[Path]:
    """Directories to search, in order, without repeats.

    A ``data_dir`` the caller names is the only place searched (with its sub-folders named
    in ``info.folder_names``): the data there is used, or the load fails, never silently
    replaced by another copy. Without one: ``$MMCR_DATA_DIR`` and its sub-folders, then
    ``system_dirs`` (where a system package installs the data).
    """
    bases: list[Path] = []
    if data_dir is not None:
        bases.append(Path(data_dir).expanduser())
    else:
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            bases.append(Path(env).expanduser())
    dirs: list[Path] = []
    for base in bases:
        dirs.append(base)
        dirs.extend(base / sub for sub in info.folder_names)
    if data_dir is None:
        dirs.extend(system_dirs)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def format_dirs(dirs: Sequence[Path]) -> str:
    """The searched directories for an error message."""
    if not dirs:
        return "(no directory: neither data_dir nor the MMCR_DATA_DIR environment variable is set)"
    return ", ".join(str(d) for d in dirs)
