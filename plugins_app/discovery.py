"""Find plugin files and read their metadata by parsing them — never by importing them.

Two halves:

* `parse_plugin_source(source)` is pure: it turns the text of one file into a `PluginMeta`
  (summary, description, version, author, functions, TIMEOUT, the params JSON Schema of `run`,
  whether `run` takes a context) or a one-line error ("line 3: invalid syntax"). Nothing in it
  touches the database or the disk.
* `discover(folder)` scans a folder (subfolders too), hashes and parses the files, and
  reconciles the `Plugin` / `PluginVersion` rows in one transaction. Call it through
  `plugins_app.services.plugins_discover()`.

Rules an author can rely on (also in the plugin contract):

* The id is the file stem, lowercased, `_` → `-`. Files and folders whose name starts with `_`
  or `.` are not plugins (helpers, `__init__.py`, `__pycache__`, editor droppings).
* `run` takes a context when its first parameter is named `context`; the runner then passes
  the run context positionally and the params as keywords. Otherwise (legacy) only the params.
* If two files map to the same id, the one already registered for that id keeps it; when none
  is, the shallowest path wins, then the alphabetically first. The other is reported.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from plugins_app.models import PLUGIN_ID_PATTERN, Plugin, PluginVersion

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_PLUGIN_BYTES = 1024 * 1024
MAX_TIMEOUT = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
MAX_PATH_CHARS = 1000  # Plugin.file_path
_ID_RE = re.compile(PLUGIN_ID_PATTERN)
# Arbitrary, stable key for pg_advisory_xact_lock: one discovery at a time per database.
_PG_LOCK_KEY = 0x0C70_D15C

# --- Parsing -----------------------------------------------------------------------------------


class PluginParseError(Exception):
    """The file cannot be registered as written; the message names the line when it can."""


@dataclass
class PluginMeta:
    name: str = ""
    summary: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    functions: list[dict[str, Any]] = field(default_factory=list)
    params_schema: dict[str, Any] = field(default_factory=dict)
    takes_context: bool = False
    timeout: int | None = None


def plugin_id_for(path: Path) -> str:
    """The plugin id a file would get (may be invalid; check with `is_valid_plugin_id`)."""
    return path.stem.lower().replace("_", "-")


def is_valid_plugin_id(plugin_id: str) -> bool:
    return len(plugin_id) <= 100 and bool(_ID_RE.match(plugin_id))


def parse_plugin_source(source: str) -> PluginMeta:
    """Parse one plugin file's text. Raises PluginParseError with "line N: message".

    Costs one `ast.parse` of the file; nothing is imported or executed.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise PluginParseError(f"line {exc.lineno or '?'}: {exc.msg}") from None
    except ValueError as exc:  # e.g. NUL bytes in the source on Python 3.11
        raise PluginParseError(f"line ?: {exc}") from None

    meta = PluginMeta()
    doc = ast.get_docstring(tree) or ""
    meta.summary, _, rest = doc.partition("\n")
    meta.summary, meta.description = meta.summary.strip(), inspect.cleandoc(rest)
    assigns = _module_assignments(tree)
    meta.version = _string_constant(assigns.get("__version__"))
    meta.author = _string_constant(assigns.get("__author__"))
    meta.name = _string_constant(assigns.get("__title__"))
    meta.timeout = _timeout(assigns.get("TIMEOUT"))

    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    text = _SourceText(source)
    meta.functions = [_describe_function(fn, text) for fn in functions]
    run = next((fn for fn in reversed(functions) if fn.name == "run"), None)
    if run is None:
        raise PluginParseError("no top-level `def run(...)` found")
    if isinstance(run, ast.AsyncFunctionDef):
        raise PluginParseError(f"line {run.lineno}: run must be a plain `def`, not `async def`")
    meta.takes_context, meta.params_schema = _run_schema(run)
    if "PARAMS_SCHEMA" in assigns:
        meta.params_schema = _params_schema_override(assigns["PARAMS_SCHEMA"])
    _reject_nul(meta.params_schema)
    return meta


def _module_assignments(tree: ast.Module) -> dict[str, ast.expr]:
    """Top-level `NAME = value` / `NAME: T = value`; the last assignment wins, like Python."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found[node.target.id] = node.value
    return found


def _string_constant(node: ast.expr | None) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float):
        return str(node.value).strip()
    return ""


def _timeout(node: ast.expr | None) -> int | None:
    if node is None:
        return None
    try:
        value = _arithmetic(node)
    except ValueError:
        raise PluginParseError(
            f"line {node.lineno}: TIMEOUT must be a number of seconds (like 300 or 5 * 60)"
        ) from None
    if value <= 0 or value != int(value):
        raise PluginParseError(f"line {node.lineno}: TIMEOUT must be a positive whole number")
    if value > MAX_TIMEOUT:
        raise PluginParseError(f"line {node.lineno}: TIMEOUT must be at most {MAX_TIMEOUT} s")
    return int(value)


def _arithmetic(node: ast.expr) -> float:
    """Evaluate `5 * 60`-style constant arithmetic without eval()."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_arithmetic(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        return left - right if isinstance(node.op, ast.Sub) else left * right
    raise ValueError("not constant arithmetic")


class _SourceText:
    """Slices the source text of AST nodes: as the author wrote them, and (unlike
    `ast.unparse`, which dominated discovery time) without re-rendering the tree."""

    def __init__(self, source: str):
        # AST column offsets count UTF-8 bytes.
        self.lines = [line.encode("utf-8") for line in source.splitlines(keepends=True)]

    def of(self, node: ast.AST | None) -> str | None:
        if node is None:
            return None
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            return self.lines[first][node.col_offset : node.end_col_offset].decode("utf-8")
        chunks = [self.lines[first][node.col_offset :], *self.lines[first + 1 : last]]
        chunks.append(self.lines[last][: node.end_col_offset])
        return b"".join(chunks).decode("utf-8")


def _describe_function(fn: ast.FunctionDef | ast.AsyncFunctionDef, text: _SourceText) -> dict:
    args = fn.args
    params = []
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for arg, default in zip(positional, defaults, strict=True):
        params.append(_describe_param(arg, default, "positional", text))
    if args.vararg:
        params.append(_describe_param(args.vararg, None, "var_positional", text))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(_describe_param(arg, default, "keyword_only", text))
    if args.kwarg:
        params.append(_describe_param(args.kwarg, None, "var_keyword", text))
    doc = (ast.get_docstring(fn) or "").strip().partition("\n")[0]
    return {
        "name": fn.name,
        "lineno": fn.lineno,
        "is_async": isinstance(fn, ast.AsyncFunctionDef),
        "doc": doc,
        "params": params,
        "returns": text.of(fn.returns),
    }


def _describe_param(
    arg: ast.arg, default: ast.expr | None, kind: str, text: _SourceText
) -> dict[str, Any]:
    return {
        "name": arg.arg,
        "kind": kind,
        "annotation": text.of(arg.annotation),
        "default": text.of(default),
    }


# --- The params schema of run ----------------------------------------------------------------


def _run_schema(run: ast.FunctionDef) -> tuple[bool, dict[str, Any]]:
    """(takes_context, JSON Schema of the keyword params the runner will pass)."""
    args = run.args
    positional = [*args.posonlyargs, *args.args]
    takes_context = bool(positional) and positional[0].arg == "context"
    if takes_context:
        positional = positional[1:]
    posonly_left = args.posonlyargs[1:] if takes_context else args.posonlyargs
    if posonly_left:
        raise PluginParseError(
            f"line {run.lineno}: run's parameter {posonly_left[0].arg!r} is positional-only, "
            "but params are passed by keyword"
        )
    defaults: dict[str, ast.expr] = {}
    if args.defaults:  # they belong to the last positional parameters
        all_positional = [*args.posonlyargs, *args.args]
        for arg, default in zip(all_positional[-len(args.defaults) :], args.defaults, strict=True):
            defaults[arg.arg] = default
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if default is not None:
            defaults[arg.arg] = default

    descriptions = parse_args_section(ast.get_docstring(run) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg in [*positional, *args.kwonlyargs]:
        prop = schema_for_annotation(arg.annotation)
        if arg.arg in descriptions:
            prop["description"] = _clean(descriptions[arg.arg])  # display text only
        if arg.arg in defaults:
            found, value = _literal_default(defaults[arg.arg])
            if found:
                prop["default"] = value
        else:
            required.append(arg.arg)
        properties[arg.arg] = prop

    schema: dict[str, Any] = {"$schema": SCHEMA_DIALECT, "type": "object"}
    if properties:
        schema["properties"] = properties
    if required:
        schema["required"] = required
    # Without **kwargs, an unknown param would be a TypeError at run time: refuse it up front.
    # With only *args the runner cannot pass anything positional, so the same applies.
    if args.kwarg is None:
        schema["additionalProperties"] = False
    return takes_context, schema


_SCALARS = {
    "str": {"type": "string"},
    "Path": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "None": {"type": "null"},
    "NoneType": {"type": "null"},
    "list": {"type": "array"},
    "List": {"type": "array"},
    "tuple": {"type": "array"},
    "Tuple": {"type": "array"},
    "set": {"type": "array", "uniqueItems": True},
    "Set": {"type": "array", "uniqueItems": True},
    "dict": {"type": "object"},
    "Dict": {"type": "object"},
    "Any": {},
    "object": {},
}


def schema_for_annotation(node: ast.expr | None) -> dict[str, Any]:
    """JSON Schema for one annotation node. Unannotated or unknown types accept anything
    (the unknown type's source is kept as `x-python-type` so a form can show it)."""
    if node is None:
        return {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:  # a string annotation: "list[str]"
            return schema_for_annotation(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return {"x-python-type": node.value}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union([*_flatten_bitor(node.left), *_flatten_bitor(node.right)])
    name = _type_name(node.value if isinstance(node, ast.Subscript) else node)
    if not isinstance(node, ast.Subscript):
        if name in _SCALARS:
            return dict(_SCALARS[name])
        return {"x-python-type": ast.unparse(node)}
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    return _generic(name, args, node)


def _generic(name: str, args: list[ast.expr], node: ast.Subscript) -> dict[str, Any]:
    if name == "Literal":
        return _literal(args)
    if name == "Optional":
        return _union([args[0], ast.Constant(None)])
    if name == "Union":
        return _union(args)
    if name == "Annotated":
        return schema_for_annotation(args[0])
    if name in {"list", "List", "set", "Set", "Sequence", "Iterable"}:
        schema = {"type": "array", "items": schema_for_annotation(args[0])}
        if name in {"set", "Set"}:
            schema["uniqueItems"] = True
        return schema
    if name in {"tuple", "Tuple"}:
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            return {"type": "array", "items": schema_for_annotation(args[0])}
        items = [schema_for_annotation(a) for a in args]
        return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items)}
    if name in {"dict", "Dict", "Mapping"}:
        schema: dict[str, Any] = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = schema_for_annotation(args[1])
        return schema
    return {"x-python-type": ast.unparse(node)}


def _type_name(node: ast.expr) -> str:
    """`Literal`, `typing.Literal` and `t.Literal` all name Literal."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _flatten_bitor(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return [*_flatten_bitor(node.left), *_flatten_bitor(node.right)]
    return [node]


def _literal(args: list[ast.expr]) -> dict[str, Any]:
    values = []
    for arg in args:
        found, value = _literal_default(arg)
        if not found:
            raise PluginParseError(f"line {arg.lineno}: Literal[...] values must be constants")
        values.append(value)
    schema: dict[str, Any] = {"enum": values}
    kinds = {_json_type(v) for v in values}
    if len(kinds) == 1:
        schema = {"type": kinds.pop(), **schema}
    return schema


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _union(args: list[ast.expr]) -> dict[str, Any]:
    schemas = [schema_for_annotation(a) for a in args]
    if any(s == {} for s in schemas):
        return {}
    # The common `T | None` stays a plain type list, which form generators read easily.
    simple = [s for s in schemas if set(s) == {"type"} and isinstance(s["type"], str)]
    if len(simple) == len(schemas):
        return {"type": list(dict.fromkeys(s["type"] for s in simple))}
    return {"anyOf": schemas}


def _literal_default(node: ast.expr) -> tuple[bool, Any]:
    """(True, value) when the default is a JSON-able literal, else (False, None)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    if isinstance(value, str | bool | int | None):  # the common case, no round trip
        return True, value
    try:
        # allow_nan=False: 1e999 is a literal, but Infinity is not JSON (nor jsonb).
        return True, json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return False, None


def _params_schema_override(node: ast.expr) -> dict[str, Any]:
    found, schema = _literal_default(node)
    if not found or not isinstance(schema, dict):
        raise PluginParseError(
            f"line {node.lineno}: PARAMS_SCHEMA must be a literal dict (JSON values only)"
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "top level"
        raise PluginParseError(
            f"line {node.lineno}: PARAMS_SCHEMA is not a valid JSON Schema ({where}: {exc.message})"
        ) from None
    if schema.get("type", "object") != "object":
        raise PluginParseError(
            f"line {node.lineno}: PARAMS_SCHEMA must describe an object (the params dict)"
        )
    return {"$schema": SCHEMA_DIALECT, **schema}


def _reject_nul(schema: dict[str, Any]) -> None:
    # PostgreSQL's jsonb cannot hold U+0000 or a lone surrogate ("\ud800" in a string
    # literal); refuse them here rather than fail the whole batch. Cleaning them would change
    # what the schema accepts.
    text = json.dumps(schema, ensure_ascii=False)
    if "\\u0000" in text:
        raise PluginParseError("the params schema contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PluginParseError("the params schema contains invalid Unicode text") from None


_SECTION_RE = re.compile(r"^(Args|Arguments|Parameters|Params)\s*:\s*$")
_OTHER_SECTION_RE = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_ARG_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_args_section(docstring: str) -> dict[str, str]:
    """Google-style `Args:` section → {param: description}; continuation lines are joined."""
    lines = inspect.cleandoc(docstring).splitlines()
    result: dict[str, str] = {}
    inside, current, base_indent = False, None, None
    for line in lines:
        stripped = line.strip()
        if not inside:
            inside = bool(_SECTION_RE.match(stripped))
            continue
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if base_indent is None:
            base_indent = indent
        if indent < base_indent or (indent == 0 and _OTHER_SECTION_RE.match(stripped)):
            break
        match = _ARG_RE.match(stripped) if indent == base_indent else None
        if match:
            current = match.group(1)
            result[current] = match.group(2).strip()
        elif current:
            result[current] = f"{result[current]} {stripped}".strip()
    return result


# --- Scanning and registering ----------------------------------------------------------------


@dataclass
class DiscoveryIssue:
    path: str
    message: str
    plugin_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.plugin_id} ({self.path})" if self.plugin_id else self.path
        return f"{where}: {self.message}"


@dataclass
class DiscoveryResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[DiscoveryIssue] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.missing)

    def summary(self) -> str:
        """Human summary, one line per category; names listed except for `unchanged`."""

        def line(label: str, names: list[str]) -> str:
            return f"{label} ({len(names)})" + (": " + ", ".join(names) if names else "")

        lines = [
            line("added", self.added),
            line("updated", self.updated),
            f"unchanged ({len(self.unchanged)})",
            line("missing", self.missing),
            f"errors ({len(self.errors)})" + (":" if self.errors else ""),
        ]
        lines += [f"  {issue}" for issue in self.errors]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "missing": self.missing,
            "errors": [
                {"path": e.path, "plugin": e.plugin_id, "message": e.message} for e in self.errors
            ],
        }


@dataclass
class _File:
    plugin_id: str
    rel_path: str
    data: bytes
    mtime: datetime
    sha256: str = ""
    md5: str = ""


def scan_folder(folder: Path) -> tuple[list[_File], list[DiscoveryIssue]]:
    """Read every candidate `.py` file under `folder`. Costs one read of each file."""
    files, issues = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        # Sorted, so the walk (and so duplicate resolution) is the same on every machine.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        for filename in sorted(filenames):
            if not filename.endswith(".py") or filename.startswith(("_", ".")):
                continue
            path = Path(dirpath, filename)
            rel_path = path.relative_to(folder).as_posix()
            plugin_id = plugin_id_for(path)
            if len(rel_path) > MAX_PATH_CHARS:
                issues.append(DiscoveryIssue(rel_path[:200] + "…", "path is too long"))
                continue
            if not is_valid_plugin_id(plugin_id):
                issues.append(
                    DiscoveryIssue(
                        rel_path,
                        f"{plugin_id!r} is not a valid plugin id (lowercase letters, digits and "
                        "single hyphens, from the file name); rename the file",
                    )
                )
                continue
            try:
                stat = path.stat()
                if stat.st_size > MAX_PLUGIN_BYTES:
                    issues.append(
                        DiscoveryIssue(rel_path, f"larger than {MAX_PLUGIN_BYTES} bytes", plugin_id)
                    )
                    continue
                data = path.read_bytes()
            except OSError as exc:  # vanished between the walk and the read, unreadable
                issues.append(DiscoveryIssue(rel_path, f"cannot read: {exc.strerror}", plugin_id))
                continue
            mtime = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
            files.append(_File(plugin_id, rel_path, data, mtime))
    return files, issues


def _pick_winners(
    files: list[_File], registered_paths: dict[str, str]
) -> tuple[list[_File], list[DiscoveryIssue]]:
    by_id: dict[str, list[_File]] = {}
    for f in files:
        by_id.setdefault(f.plugin_id, []).append(f)
    winners, issues = [], []
    for plugin_id, candidates in by_id.items():
        candidates.sort(
            key=lambda f: (
                f.rel_path != registered_paths.get(plugin_id),
                f.rel_path.count("/"),
                f.rel_path,
            )
        )
        winners.append(candidates[0])
        for loser in candidates[1:]:
            issues.append(
                DiscoveryIssue(
                    loser.rel_path,
                    f"duplicate plugin id {plugin_id!r}: {candidates[0].rel_path} is used, "
                    "this file is ignored; rename one of them",
                    plugin_id,
                )
            )
    return winners, issues


_META_FIELDS = [
    "name", "summary", "description", "version", "author", "functions", "params_schema",
    "takes_context", "timeout",
]  # fmt: skip
_FILE_FIELDS = ["file_path", "sha256", "md5", "size", "mtime", "is_missing", "discovery_error"]


def discover(folder: Path, *, auto_activate: bool = False, force: bool = False) -> DiscoveryResult:
    """Reconcile the plugin rows with the files under `folder` and return what changed.

    Files are read and hashed outside the transaction; only new or changed files (by sha256)
    are parsed, unless `force` (re-parse everything, e.g. after upgrading Octopus). Writes are
    a handful of bulk queries in one transaction, serialised against other discoveries (a
    PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE does the same).
    """
    files, issues = scan_folder(folder)
    for f in files:
        f.sha256 = hashlib.sha256(f.data).hexdigest()
        f.md5 = hashlib.md5(f.data, usedforsecurity=False).hexdigest()
    result = DiscoveryResult()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_LOCK_KEY])
        existing = {p.pk: p for p in Plugin.objects.all()}
        winners, dup_issues = _pick_winners(files, {k: p.file_path for k, p in existing.items()})
        issues += dup_issues
        _register(winners, existing, result, auto_activate=auto_activate, force=force)
        seen = {f.plugin_id for f in winners}
        result.missing = _mark_missing(existing, seen)
    result.errors = issues + [
        DiscoveryIssue(p.file_path, p.discovery_error, p.pk)
        # Present files are exactly the rows not missing now; no IN list of every id.
        for p in Plugin.objects.filter(is_missing=False).exclude(discovery_error="").order_by("pk")
    ]
    for names in (result.added, result.updated, result.unchanged, result.missing):
        names.sort()
    return result


def _register(
    files: list[_File],
    existing: dict[str, Plugin],
    result: DiscoveryResult,
    *,
    auto_activate: bool,
    force: bool,
) -> None:
    new_plugins, changed, touched, versions = [], [], [], []
    now = timezone.now()
    for f in files:
        plugin = existing.get(f.plugin_id)
        content_changed = plugin is None or plugin.sha256 != f.sha256
        source, meta, error = _read(f) if (content_changed or force) else (None, None, "")
        if plugin is None:
            plugin = Plugin(pk=f.plugin_id, name=f.plugin_id, created_at=now)
            plugin.is_active = auto_activate and not error
            new_plugins.append(plugin)
            result.added.append(f.plugin_id)
        elif content_changed or plugin.is_missing or plugin.file_path != f.rel_path:
            changed.append(plugin)
            result.updated.append(f.plugin_id)
        elif force or plugin.mtime != f.mtime:
            touched.append(plugin)
            result.unchanged.append(f.plugin_id)
        else:
            result.unchanged.append(f.plugin_id)
        if content_changed or force:
            _apply_meta(plugin, meta, error)
        plugin.file_path, plugin.sha256, plugin.md5 = f.rel_path, f.sha256, f.md5
        plugin.size, plugin.mtime, plugin.is_missing = len(f.data), f.mtime, False
        plugin.updated_at = now
        if content_changed and source is not None:
            versions.append(
                PluginVersion(
                    plugin_id=f.plugin_id,
                    sha256=f.sha256,
                    md5=f.md5,
                    size=len(f.data),
                    version=_clip(meta.version, 50) if meta else "",
                    source=source,
                )
            )
    Plugin.objects.bulk_create(new_plugins, batch_size=500)
    fields = [*_FILE_FIELDS, "updated_at"]
    Plugin.objects.bulk_update(changed, [*fields, *_META_FIELDS], batch_size=500)
    # Only the mtime moved (a touch, a checkout): not a change worth a new "last change".
    Plugin.objects.bulk_update(
        touched, _FILE_FIELDS + (_META_FIELDS if force else []), batch_size=500
    )
    # A file put back to an earlier content hash already has its version row.
    PluginVersion.objects.bulk_create(versions, batch_size=500, ignore_conflicts=True)


def _read(f: _File) -> tuple[str | None, PluginMeta | None, str]:
    """(source text or None, metadata or None, error message or "")."""
    try:
        source = f.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, None, f"not UTF-8 text (byte {exc.start})"
    if "\x00" in source:
        return None, None, "the file contains NUL bytes"
    try:
        return source, parse_plugin_source(source), ""
    except PluginParseError as exc:
        return source, None, str(exc)


def _clean(value: Any) -> Any:
    """Strings as the database can store them: no NUL, no lone surrogates (both can come from
    escapes in a docstring or a literal). For display fields only."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def _clip(value: str, limit: int) -> str:
    value = _clean(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _apply_meta(plugin: Plugin, meta: PluginMeta | None, error: str) -> None:
    plugin.discovery_error = error
    if meta is None:
        # Keep the last good metadata on show; the error makes the plugin not runnable.
        return
    plugin.name = _clip(meta.name or plugin.pk.replace("-", " ").capitalize(), 200)
    plugin.summary = _clip(meta.summary, 500)
    plugin.description = _clean(meta.description)
    plugin.version = _clip(meta.version, 50)
    plugin.author = _clip(meta.author, 200)
    plugin.functions = _clean(meta.functions)
    plugin.params_schema = meta.params_schema
    plugin.takes_context = meta.takes_context
    plugin.timeout = meta.timeout


def _mark_missing(existing: dict[str, Plugin], seen: set[str]) -> list[str]:
    gone = [pk for pk, p in existing.items() if pk not in seen and not p.is_missing]
    if gone:
        Plugin.objects.filter(pk__in=gone).update(is_missing=True, updated_at=timezone.now())
    return gone
