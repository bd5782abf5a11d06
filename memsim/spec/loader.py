"""Reading device files: YAML (safe_load only), `extends:` presets and the built-in catalogue."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from memsim.errors import SpecError, UnknownDeviceError
from memsim.spec.device import DeviceSpec, parse_device
from memsim.spec.fields import nearest_hint, printable

_MAX_EXTENDS_DEPTH = 16


def catalogue_dir() -> Path:
    """The folder of built-in device files (inside the installed package, or the source tree)."""
    # A non-editable install puts devices/ at memsim/builtin_devices (see pyproject.toml).
    installed = Path(__file__).resolve().parents[1] / "builtin_devices"
    if installed.is_dir():
        return installed
    # editable installs and source checkouts read the repository's devices/ folder
    return Path(__file__).resolve().parents[2] / "devices"


def builtin_device_files() -> dict[str, Path]:
    """Built-in device names (file stems) and their files, sorted by name."""
    folder = catalogue_dir()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_device_path(name_or_path: str | Path) -> Path:
    """A built-in device name or a path to a YAML file."""
    text = str(name_or_path)
    builtin = builtin_device_files()
    if text in builtin:
        return builtin[text]
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in text:
        if not path.exists():
            raise UnknownDeviceError(f"{printable(text)}: no such file")
        if not path.is_file():
            raise UnknownDeviceError(f"{printable(text)}: not a file")
        return path
    raise UnknownDeviceError(
        f"unknown device {text!r}{nearest_hint(text, list(builtin))}; built-in devices: "
        f"{', '.join(builtin) or 'none'} (or give a path to a YAML file)")


def read_yaml(path: Path) -> Any:
    """The document in a file, with one-line errors for unreadable files and bad YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError.single(str(path), "", "not a UTF-8 text file") from None
    except OSError as e:
        raise SpecError.single(str(path), "", f"cannot read: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = e.problem or e.context or "invalid YAML"
        raise SpecError.single(str(path), "", f"YAML syntax error at {where}{what}") from None
    except yaml.YAMLError as e:
        raise SpecError.single(str(path), "", f"YAML error: {e}".splitlines()[0]) from None
    except RecursionError:
        raise SpecError.single(str(path), "", "YAML error: nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal beyond Python's int-string limit
        raise SpecError.single(str(path), "", f"YAML error: {e}".splitlines()[0]) from None


def merge(base: Any, override: Any) -> Any:
    """Deep merge for `extends:`: mappings merge by key, lists of named mappings (such as
    `faults`) merge by `name`, lists of sources by `id` (a restated source replaces the
    parent's whole; sources are never removed), anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    for key, deep in _LIST_KEYS:
        if _keyed_list(base, key) and _keyed_list(override, key):
            out_list = [copy.deepcopy(item) for item in base]
            index = {item[key]: i for i, item in enumerate(out_list)}
            for item in override:
                if item[key] in index:
                    i = index[item[key]]
                    out_list[i] = merge(out_list[i], item) if deep else copy.deepcopy(item)
                else:
                    out_list.append(copy.deepcopy(item))
            return out_list
    return copy.deepcopy(override)


# (key, whether a matched item merges into its parent's): a fault mechanism is refined field
# by field; a source restated under its id is a new citation, replaced whole (no stale url)
_LIST_KEYS = (("name", True), ("id", False))


def _keyed_list(value: Any, key: str) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, Mapping) and isinstance(item.get(key), str) for item in value)


def load_document(path: Path, _chain: tuple[Path, ...] = ()) -> Any:
    """The document in `path` with its `extends:` chain applied."""
    data = read_yaml(path)
    if not isinstance(data, Mapping) or "extends" not in data:
        return data
    parent_ref = data["extends"]
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise SpecError.single(str(path), "extends",
                               "expected the name of a built-in device or a path to a file")
    resolved = path.resolve()
    if resolved in _chain or len(_chain) >= _MAX_EXTENDS_DEPTH:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise SpecError.single(str(path), "extends", f"extends chain loops: {cycle}")
    candidate = (path.parent / parent_ref) if not Path(parent_ref).is_absolute() else Path(
        parent_ref)
    try:
        parent_path = candidate if candidate.is_file() else resolve_device_path(parent_ref)
    except UnknownDeviceError as e:
        raise SpecError.single(str(path), "extends", str(e)) from None
    parent = load_document(parent_path, (*_chain, resolved))
    if not isinstance(parent, Mapping):
        got = type(parent).__name__ if parent is not None else "an empty document"
        raise SpecError.single(str(parent_path), "", f"expected a mapping of device fields at "
                               f"the top level (extended by {path}), got {got}")
    child = {k: v for k, v in data.items() if k != "extends"}
    return merge(parent, child)


def load_device_spec(name_or_path: str | Path) -> DeviceSpec:
    """Load and validate a device: a built-in name (see `builtin_device_files`) or a file."""
    path = resolve_device_path(name_or_path)
    return parse_device(load_document(path), str(path))
