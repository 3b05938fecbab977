"""The node registry: an explicit object (never a module-level dict) that checks and holds node types.

Each :class:`NodeDef` is checked when it is registered — the `run` parameters must match the inputs by name, the
defaults must be valid, the port types must exist — in the spirit of chaiNNer's ``node_check.py``. Node packs (the
built-in one and user folders) load through :meth:`NodeRegistry.load_pack`; a broken pack is recorded as a
:class:`PackProblem` and never stops the others from loading.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
import traceback
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nodegraph.core.errors import SchemaError
from nodegraph.core.schema import NodeDef
from nodegraph.core.types import BUILTIN_TYPES

_TYPE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_USER_PACKS_PACKAGE = "nodegraph_packs"


@dataclass(frozen=True)
class PackProblem:
    """A node pack (or one module or node of it) that could not be loaded: shown to the user, never swallowed."""

    pack: str
    message: str
    details: str = ""

    def __str__(self) -> str:
        return f"node pack {self.pack}: {self.message}"


class NodeRegistry:
    """Holds the node types known to one application instance, each checked on registration."""

    def __init__(self) -> None:
        self._defs: dict[str, NodeDef] = {}
        self._packs: dict[str, str] = {}
        self._port_types: set[str] = set(BUILTIN_TYPES)
        self.problems: list[PackProblem] = []

    # --- lookup -------------------------------------------------------------------------------------------------
    def get(self, type_id: str) -> NodeDef | None:
        """The node type with this id, or None when unknown."""
        return self._defs.get(type_id)

    def __getitem__(self, type_id: str) -> NodeDef:
        return self._defs[type_id]

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._defs

    def __iter__(self) -> Iterator[NodeDef]:
        return iter(self._defs.values())

    def __len__(self) -> int:
        return len(self._defs)

    def pack_of(self, type_id: str) -> str | None:
        """The name of the pack a node type came from."""
        return self._packs.get(type_id)

    @property
    def port_types(self) -> frozenset[str]:
        """Every port type name nodes may use."""
        return frozenset(self._port_types)

    # --- registration -------------------------------------------------------------------------------------------
    def add_port_type(self, name: str) -> None:
        """Make a new port type known (node packs use this for their own handle types)."""
        if not isinstance(name, str) or not _TYPE_ID.match(name):
            raise SchemaError(f"port type name {name!r} is not valid")
        self._port_types.add(name)

    def register(self, node_def: NodeDef, pack: str = "<code>", *, replace: bool = False) -> None:
        """Check `node_def` and add it; raise :class:`SchemaError` listing every problem found."""
        problems = check_node_def(node_def, self._port_types)
        if node_def.type in self._defs and not replace:
            problems.append(f"type id already registered by pack {self._packs[node_def.type]}")
        if problems:
            raise SchemaError(f"node {node_def.type!r}: " + "; ".join(problems))
        self._defs[node_def.type] = node_def
        self._packs[node_def.type] = pack

    def load_pack(self, path: str | Path, package: str | None = None, name: str | None = None) -> list[NodeDef]:
        """Import the node pack at `path` (a package folder or one ``.py`` file) and register its nodes.

        `package` is the module name to import it as (default: under ``nodegraph_packs``); `name` is the pack name
        shown to users (default: the folder or file name).

        Every module-level :class:`NodeDef` in the pack's modules is registered, as are the names in a module-level
        ``PORT_TYPES`` list. Problems (import errors, invalid declarations) are appended to :attr:`problems` and the
        rest of the pack still loads. Returns the node types registered.
        """
        path = Path(path)
        pack_name = name or path.stem
        if package is None:  # the folder's hash keeps two packs of the same name in different folders apart
            digest = hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:8]
            package = f"{_USER_PACKS_PACKAGE}.{_safe_module_name(pack_name)}_{digest}"
        modules = self._import_pack_modules(path, package, pack_name)
        for module in modules:
            for name in getattr(module, "PORT_TYPES", ()):
                try:
                    self.add_port_type(name)
                except SchemaError as error:
                    self.problems.append(PackProblem(pack_name, str(error)))
        registered: list[NodeDef] = []
        seen: set[int] = set()
        for module in modules:
            for value in vars(module).values():
                if isinstance(value, NodeDef) and id(value) not in seen:
                    seen.add(id(value))
                    try:
                        self.register(value, pack=pack_name)
                    except SchemaError as error:
                        self.problems.append(PackProblem(pack_name, str(error)))
                    else:
                        registered.append(value)
        return registered

    def load_packs_from(self, folder: str | Path) -> list[NodeDef]:
        """Load every pack in `folder`: each sub-folder with an ``__init__.py`` and each ``.py`` file."""
        folder = Path(folder)
        if not folder.is_dir():
            self.problems.append(PackProblem(str(folder), "is not a folder"))
            return []
        registered: list[NodeDef] = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith((".", "_")):
                continue
            if (entry.is_dir() and (entry / "__init__.py").is_file()) or (entry.suffix == ".py" and entry.is_file()):
                registered += self.load_pack(entry)
        return registered

    def _import_pack_modules(self, path: Path, package: str, pack_name: str) -> list[types.ModuleType]:
        if not path.exists():
            self.problems.append(PackProblem(pack_name, f"{path} does not exist"))
            return []
        is_package = path.is_dir()
        init = path / "__init__.py" if is_package else path
        if is_package and not init.is_file():
            self.problems.append(PackProblem(pack_name, f"{path} has no __init__.py"))
            return []
        root = self._import_module(package, init, pack_name, search=[str(path)] if is_package else None)
        if root is None:
            return []
        modules = [root]
        if is_package:
            for info in pkgutil.iter_modules([str(path)]):
                if info.name.startswith("_"):
                    continue
                module = self._import_module(f"{package}.{info.name}", None, pack_name)
                if module is not None:
                    modules.append(module)
        return modules

    def _import_module(self, name: str, file: Path | None, pack_name: str,
                       search: list[str] | None = None) -> types.ModuleType | None:
        if name in sys.modules:
            return sys.modules[name]
        parent = name.rpartition(".")[0]
        if parent == _USER_PACKS_PACKAGE and parent not in sys.modules:
            namespace = types.ModuleType(parent)
            namespace.__path__ = []
            sys.modules[parent] = namespace
        try:
            if file is None:
                return importlib.import_module(name)
            spec = importlib.util.spec_from_file_location(name, file, submodule_search_locations=search)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        except BaseException as error:  # a pack may raise anything, even SystemExit; it must not kill the app
            if isinstance(error, KeyboardInterrupt):
                raise
            sys.modules.pop(name, None)
            where = name.rpartition(".")[2] if file is None else (file.name if file else name)
            self.problems.append(PackProblem(
                pack_name, f"{where} failed to import: {type(error).__name__}: {error}", traceback.format_exc()))
            return None


def _safe_module_name(text: str) -> str:
    name = re.sub(r"\W", "_", text)
    return name if name and not name[0].isdigit() else f"_{name}"


def check_node_def(node_def: NodeDef, port_types: Iterable[str]) -> list[str]:
    """Every problem with a node declaration: ids, versions, ports, defaults, and the run/fingerprint signatures."""
    port_types = set(port_types)
    problems: list[str] = []
    if not isinstance(node_def.type, str) or not _TYPE_ID.match(node_def.type):
        problems.append("type id must start with a letter and hold only letters, digits, '_', '.', '-'")
    if isinstance(node_def.version, bool) or not isinstance(node_def.version, int) or node_def.version < 1:
        problems.append("version must be an integer >= 1")
    if not node_def.display_name:
        problems.append("display_name is empty")
    for kind, ports in (("input", node_def.inputs), ("output", node_def.outputs)):
        names = [port.name for port in ports]
        for name in {n for n in names if names.count(n) > 1}:
            problems.append(f"{kind} name {name!r} is declared twice")
        for port in ports:
            if not isinstance(port.name, str) or not port.name:
                problems.append(f"an {kind} has an empty name")
            if port.type not in port_types:
                problems.append(f"{kind} {port.name!r} has unknown port type {port.type!r}")
    for spec in node_def.inputs:
        problems += spec.declaration_problems()
    problems += _signature_problems(node_def)
    for version in node_def.upgrades:
        if not isinstance(version, int) or not 1 <= version < max(int(node_def.version), 1):
            problems.append(f"upgrade from version {version!r} does not lead to version {node_def.version}")
    return problems


def _signature_problems(node_def: NodeDef) -> list[str]:
    problems: list[str] = []
    if not callable(node_def.run):
        return ["run is not callable"]
    try:
        params = list(inspect.signature(node_def.run).parameters.values())
    except (TypeError, ValueError):
        return ["the run function's signature cannot be read"]
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        return ["run must take the execution context as its first parameter"]
    input_names = [spec.name for spec in node_def.inputs]
    problems += _binding_problems("run", params[1:], input_names)
    if node_def.fingerprint is not None:
        if not callable(node_def.fingerprint):
            problems.append("fingerprint is not callable")
        else:
            literal_names = [spec.name for spec in node_def.literal_inputs]
            fingerprint_params = list(inspect.signature(node_def.fingerprint).parameters.values())
            if not fingerprint_params or fingerprint_params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                                            inspect.Parameter.POSITIONAL_OR_KEYWORD):
                problems.append("fingerprint must take the run settings as its first parameter")
            else:
                problems += _binding_problems("fingerprint", fingerprint_params[1:], literal_names)
    if node_def.check is not None:
        if not callable(node_def.check):
            problems.append("check is not callable")
        else:
            check_params = list(inspect.signature(node_def.check).parameters.values())
            problems += _binding_problems("check", check_params, [spec.name for spec in node_def.literal_inputs])
    return problems


def _binding_problems(what: str, params: list[inspect.Parameter], names: list[str]) -> list[str]:
    """Check that a function takes exactly `names` as keyword arguments (extra ones only through **kwargs)."""
    problems = []
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    by_name = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            problems.append(f"{what}() parameter {p.name!r} must be passable by name")
    for name in names:
        if name not in by_name and not takes_any:
            problems.append(f"{what}() has no parameter for input {name!r}")
    for name in by_name:
        if name not in names:
            problems.append(f"{what}() parameter {name!r} matches no input of the schema")
    return problems
