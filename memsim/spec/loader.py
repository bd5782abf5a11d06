"""Reading device files: YAML (safe_load only), `extends:` presets and the built-in catalogue."""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from memsim.errors import SpecError, UnknownDeviceError
from memsim.spec.device import DeviceSpec, parse_device
from memsim.spec.fields import nearest_hint, printable

_MAX_EXTENDS_DEPTH = 16
# Bounds on any YAML file memsim reads (devices, experiment and training configs), checked
# before the document is copied or validated: the largest shipped file is 27 KB and a few
# thousand values. Values are counted with aliases expanded, as a copy would make them, so
# that an alias bomb (a few lines naming one list a billion times) is refused, not copied.
MAX_YAML_BYTES = 4 << 20
MAX_YAML_VALUES = 1_000_000
MAX_YAML_DEPTH = 200


class _Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (the last would win,
    silently); keys brought in by a `<<` merge may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node,
                                                                          yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {printable(str(key))!r} given twice in one mapping",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
    """The document in a file, with one-line errors for unreadable files, bad YAML, a key
    given twice and documents beyond `MAX_YAML_BYTES`, `MAX_YAML_VALUES` or `MAX_YAML_DEPTH`."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise SpecError.single(str(path), "", f"larger than {MAX_YAML_BYTES >> 20} MiB, the "
                                   "limit for a YAML file")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError.single(str(path), "", "not a UTF-8 text file") from None
    except OSError as e:
        raise SpecError.single(str(path), "", f"cannot read: {e.strerror or e}") from None
    try:
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds no Python objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = e.problem or e.context or "invalid YAML"
        kind = "YAML error" if isinstance(e, yaml.constructor.ConstructorError) else (
            "YAML syntax error")
        raise SpecError.single(str(path), "", f"{kind} at {where}{what}") from None
    except yaml.YAMLError as e:
        raise SpecError.single(str(path), "", f"YAML error: {e}".splitlines()[0]) from None
    except RecursionError:
        raise SpecError.single(str(path), "", "YAML error: nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal beyond Python's int-string limit
        raise SpecError.single(str(path), "", f"YAML error: {e}".splitlines()[0]) from None
    _check_bounds(document, str(path))
    return document


def _check_bounds(document: Any, file: str) -> None:
    """Refuse documents with more than `MAX_YAML_VALUES` values once aliases are expanded, or
    nested deeper than `MAX_YAML_DEPTH`; stops counting at the bound."""
    count = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise SpecError.single(file, "", f"more than {MAX_YAML_VALUES:,} values once YAML "
                                   "aliases are expanded, the limit for a file")
        if depth > MAX_YAML_DEPTH:
            raise SpecError.single(file, "", f"nested deeper than {MAX_YAML_DEPTH} levels")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def merge(base: Any, override: Any) -> Any:
    """Deep merge for `extends:`: mappings merge by key, lists of named mappings (such as
    `faults`) merge by `name`, lists of sources by `id` (a restated source replaces the
    parent's whole; sources are never removed), anything else is replaced. A mapping of
    another kind (a curve or mechanism whose `kind:` differs from the parent's, or a
    constant `{value: ...}` over a curve) replaces the parent's whole: fields of one kind
    mean nothing in another."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        kind = _kind(override)
        if kind is not None and kind != _kind(base):
            return copy.deepcopy(override)
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


def _kind(mapping: Mapping[Any, Any]) -> Any:
    """The `kind:` of a curve or mechanism; "constant" for a bare `{value: ...}` (a constant
    curve, or a parameter); None for a mapping that states neither (a refinement)."""
    if "kind" in mapping:
        return mapping["kind"]
    return "constant" if "value" in mapping else None


# (key, whether a matched item merges into its parent's): a fault mechanism is refined field
# by field; a source restated under its id is a new citation, replaced whole (no stale url)
_LIST_KEYS = (("name", True), ("id", False))


def _keyed_list(value: Any, key: str) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, Mapping) and isinstance(item.get(key), str) for item in value)


_EXTENDS_ANYWHERE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "extends_anywhere", default=False)


@contextlib.contextmanager
def extends_anywhere(allowed: bool = True) -> Iterator[None]:
    """Within this block, `extends:` may name any file (`memsim --extends-anywhere`)."""
    token = _EXTENDS_ANYWHERE.set(allowed)
    try:
        yield
    finally:
        _EXTENDS_ANYWHERE.reset(token)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def load_document(path: Path, _chain: tuple[Path, ...] = ()) -> Any:
    """The document in `path` with its `extends:` chain applied.

    A parent named by `extends:` is a built-in device or a file inside the folder of the file
    that starts the chain (symbolic links resolved), so that a device file from elsewhere
    cannot make memsim read, and quote in its errors, any file of the machine; within
    `extends_anywhere()` it may be any file.
    """
    return _extended(read_yaml(path), str(path), path.parent, (*_chain, path.resolve()))


def resolve_extends(document: Any, file: str = "<memory>", folder: str | Path = ".") -> Any:
    """An in-memory device document with its `extends:` chain applied, as `load_document`
    does for a file: a parent is a built-in device or a file inside `folder`. `file` names
    the document in errors."""
    return _extended(document, file, Path(folder), (Path(folder).resolve() / "<memory>",))


def _extended(data: Any, file: str, folder: Path, chain: tuple[Path, ...]) -> Any:
    """`data` (read from `file` in `folder`, the last of `chain`) with its parents merged in."""
    if not isinstance(data, Mapping) or "extends" not in data:
        return data
    if chain[-1] in chain[:-1] or len(chain) > _MAX_EXTENDS_DEPTH:
        cycle = " -> ".join(str(p) for p in chain)
        raise SpecError.single(file, "extends", f"extends chain loops: {cycle}")
    parent_ref = data["extends"]
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise SpecError.single(file, "extends",
                               "expected the name of a built-in device or a path to a file")
    candidate = (folder / parent_ref) if not Path(parent_ref).is_absolute() else Path(
        parent_ref)
    try:
        parent_path = candidate if candidate.is_file() else resolve_device_path(parent_ref)
    except UnknownDeviceError as e:
        raise SpecError.single(file, "extends", str(e)) from None
    root = chain[0].parent
    target = parent_path.resolve()
    if not (_EXTENDS_ANYWHERE.get() or _inside(target, root)
            or _inside(target, catalogue_dir().resolve())):
        raise SpecError.single(file, "extends", f"{printable(parent_ref)} lies outside "
                               f"{root} and the catalogue; pass --extends-anywhere to allow it")
    parent = load_document(parent_path, chain)
    if not isinstance(parent, Mapping):
        got = type(parent).__name__ if parent is not None else "an empty document"
        raise SpecError.single(str(parent_path), "", f"expected a mapping of device fields at "
                               f"the top level (extended by {file}), got {got}")
    if "schema_version" not in parent:
        # checked before merging: errors about the merged fields would quote its values
        raise SpecError.single(str(parent_path), "", f"not a device file (no schema_version), "
                               f"extended by {file}")
    child = {k: v for k, v in data.items() if k != "extends"}
    return merge(parent, child)


def load_device_document(name_or_path: str | Path) -> dict[str, Any]:
    """A device's document (a built-in name or a file) with `extends:` applied: a copy to edit
    and give to `Device.from_document` or to a sweep from Python."""
    document = load_document(resolve_device_path(name_or_path))
    if not isinstance(document, Mapping):
        raise SpecError.single(str(name_or_path), "", "expected a mapping of device fields")
    return copy.deepcopy(dict(document))


def load_device_spec(name_or_path: str | Path) -> DeviceSpec:
    """Load and validate a device: a built-in name (see `builtin_device_files`) or a file."""
    path = resolve_device_path(name_or_path)
    return parse_device(load_document(path), str(path))
