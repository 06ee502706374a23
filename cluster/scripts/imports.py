"""Static analysis of interpretation scripts: style, imported modules, allowlist and findability.

Nothing here runs or imports the script, nor any module the script names: modules are located with
``importlib.util.find_spec`` for top-level names (which only asks the import finders) and with
``PathFinder`` over the parent package's ``__path__`` for submodules, so checking a script in the
worker never executes third-party package code either.

The modules listed are the ones the child process imports *before* it runs any script code (see
``child.py``), so that once the OS sandbox forbids opening files the script's own imports are already
in ``sys.modules``. That is why submodules reached by attribute (``np.fft.fft`` where ``np`` is
numpy, and numpy loads ``numpy.fft`` lazily) are listed as well.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from cluster.errors import ScriptError

STYLE_MODERN = "modern"  # defines interpret(outputs, frame, labels, context)
STYLE_LEGACY = "legacy"  # CVAT 2019: top-level code using the globals `detections` and `results`

SCRIPT_FILENAME = "<script>"  # the file name tracebacks show for the script's own lines

# What an untrusted (non-admin) script may import. A name allows its submodules too, unless a denied
# prefix below matches. Trusted scripts have no allowlist (anything installed).
DEFAULT_ALLOWED: frozenset[str] = frozenset(
    {
        "__future__",
        "numpy",
        "math",
        "cmath",
        "itertools",
        "functools",
        "collections",
        "heapq",
        "bisect",
        "operator",
        "statistics",
        "fractions",
        "decimal",
        "numbers",
        "random",
        "re",
        "json",
        "time",
        "datetime",
        "copy",
        "string",
        "dataclasses",
        "typing",
        "enum",
        "abc",
    }
)
# Submodules of allowed packages that are ways out (FFI, compilers, subprocess users) rather than maths.
DEFAULT_DENIED: frozenset[str] = frozenset(
    {"numpy.ctypeslib", "numpy.f2py", "numpy.distutils", "numpy.testing", "numpy._pytesttester"}
)


@dataclass(frozen=True)
class ImportRef:
    """One module a script needs: ``how`` is "import", "from" (a from-import's module), "submodule"
    (a from-import name that is itself a module) or "attribute" (reached as ``alias.sub``)."""

    module: str
    line: int
    how: str = "import"


@dataclass
class ScriptReport:
    style: str | None  # STYLE_MODERN, STYLE_LEGACY or None when the script does not parse
    imports: list[str] = field(default_factory=list)  # modules to import, in first-use order, unique
    refs: list[ImportRef] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # human-readable, each naming its line
    lines: list[int] = field(default_factory=list)  # the line of each problem (0 when none)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ScriptError(
                "script rejected: " + "; ".join(self.problems),
                problems=list(self.problems),
                line=self.lines[0] if self.lines else 0,
            )

    def add(self, message: str, line: int) -> None:
        self.problems.append(message)
        self.lines.append(line)


def parse(source: str) -> ast.Module:
    """Parse a script; a syntax error becomes ScriptError with ``line`` and ``col`` details."""
    try:
        return ast.parse(source, filename=SCRIPT_FILENAME, mode="exec")
    except SyntaxError as exc:
        line, col = exc.lineno or 0, exc.offset or 0
        raise ScriptError(f"syntax error: {exc.msg} (line {line}, column {col})", line=line, col=col) from None
    except (ValueError, TypeError) as exc:  # e.g. null bytes
        raise ScriptError(f"script cannot be parsed: {exc}", line=0) from None


def detect_style(tree: ast.Module) -> str:
    """modern when the module binds ``interpret`` at top level, else legacy."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "interpret":
            return STYLE_MODERN
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "interpret" for t in node.targets
        ):
            return STYLE_MODERN
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (a.asname or a.name) == "interpret" for a in node.names
        ):
            return STYLE_MODERN
    return STYLE_LEGACY


def find_imports(tree: ast.Module) -> list[ImportRef]:
    """Every module the script imports, anywhere in it (nested functions, conditionals, ...).

    Raises ScriptError (with ``line``) for ``from x import *`` and relative imports. Candidates that
    may or may not be modules (a from-import's names, attribute chains on module aliases) are listed
    only when they can be located as modules.
    """
    refs: list[ImportRef] = []
    aliases: dict[str, str] = {}  # local name -> module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                refs.append(ImportRef(a.name, node.lineno, "import"))
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    top = a.name.split(".", 1)[0]
                    aliases.setdefault(top, top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise ScriptError(f"relative import is not allowed (line {node.lineno})", line=node.lineno)
            module = node.module or ""
            refs.append(ImportRef(module, node.lineno, "from"))
            for a in node.names:
                if a.name == "*":
                    raise ScriptError(
                        f"'from {module} import *' is not allowed (line {node.lineno})", line=node.lineno
                    )
                candidate = f"{module}.{a.name}"
                if module != "__future__" and module_exists(candidate):
                    refs.append(ImportRef(candidate, node.lineno, "submodule"))
                    aliases[a.asname or a.name] = candidate
    if aliases:
        known: dict[str, bool] = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain = _attribute_chain(node)
            if not chain or chain[0] not in aliases:
                continue
            name = aliases[chain[0]]
            for part in chain[1:]:
                name = f"{name}.{part}"
                if name not in known:
                    known[name] = module_exists(name)
                if not known[name]:
                    break
                refs.append(ImportRef(name, node.lineno, "attribute"))
    return refs


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if not isinstance(cur, ast.Name):
        return None
    parts.append(cur.id)
    parts.reverse()
    return parts


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of module ``name``, found without importing anything (None when not found)."""
    if not name or any(not p.isidentifier() for p in name.split(".")):
        return None
    if name in sys.modules:
        return getattr(sys.modules[name], "__spec__", None) or importlib.machinery.ModuleSpec(name, None)
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0]) if parts[0] not in sys.modules else _find_spec(parts[0])
        for i in range(1, len(parts)):
            locations = spec.submodule_search_locations if spec is not None else None
            if locations is None:
                return None
            full = ".".join(parts[: i + 1])
            if full in sys.modules:
                spec = _find_spec(full)
                continue
            spec = importlib.machinery.PathFinder.find_spec(full, list(locations))
    except (ImportError, ValueError, AttributeError):
        return None
    return spec


def module_exists(name: str) -> bool:
    """Whether ``name`` can be imported as a module, found without importing anything."""
    return name in sys.modules or _find_spec(name) is not None


def _missing_reason(name: str) -> str | None:
    """Why ``name`` cannot be imported, or None when it can (or that cannot be told without importing)."""
    top = name.split(".", 1)[0]
    if not module_exists(top):
        return f"module not found: {top}"
    if module_exists(name):
        return None
    parent = name.rsplit(".", 1)[0]
    if not module_exists(parent):
        return _missing_reason(parent)
    # only an ordinary package says for sure that a submodule is missing: modules like six and
    # os synthesise submodules at import time
    spec = _find_spec(parent)
    if spec is None or not spec.submodule_search_locations:
        return None
    if parent in sys.modules and getattr(sys.modules[parent], "__path__", None) is None:
        return None
    return f"module not found: {name}"


def is_allowed(
    module: str, allowed: Iterable[str] | None, denied: Iterable[str] = DEFAULT_DENIED
) -> bool:
    """Whether ``module`` or one of its parent packages is allowed and none of them is denied."""
    if allowed is None:
        return True
    if not isinstance(allowed, (set, frozenset)):
        allowed = set(allowed)
    if not isinstance(denied, (set, frozenset)):
        denied = set(denied)
    parts = module.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]
    if any(p in denied for p in prefixes):
        return False
    return any(p in allowed for p in prefixes)


def check_script(
    source: str, allowed: set[str] | frozenset[str] | None, denied: Iterable[str] = DEFAULT_DENIED
) -> ScriptReport:
    """Report a script's style, modules and problems without running it.

    ``allowed=None`` means any installed module (trusted scripts); otherwise imports outside the
    allowlist are problems ("import not allowed: X (line N)"). Modules that cannot be found are
    problems either way, and so is a script that is neither style (no ``interpret`` and no use of
    ``results``) or whose ``interpret`` cannot take four positional arguments.
    """
    report = ScriptReport(style=None)
    try:
        tree = parse(source)
    except ScriptError as exc:
        report.add(exc.message, exc.line)
        return report
    report.style = detect_style(tree)
    try:
        refs = find_imports(tree)
    except ScriptError as exc:
        report.add(exc.message, exc.line)
        return report
    seen: set[str] = set()
    refused: set[str] = set()
    for ref in refs:
        if ref.module in seen or ref.module in refused:
            continue
        if not is_allowed(ref.module, allowed, denied if allowed is not None else ()):
            refused.add(ref.module)
            report.add(f"import not allowed: {ref.module} (line {ref.line})", ref.line)
            continue
        if ref.how in ("import", "from"):
            reason = _missing_reason(ref.module)
            if reason:
                refused.add(ref.module)
                report.add(f"{reason} (line {ref.line})", ref.line)
                continue
        seen.add(ref.module)
        report.refs.append(ref)
        if ref.module != "__future__":
            report.imports.append(ref.module)
    _check_shape_of_script(tree, report)
    return report


def _check_shape_of_script(tree: ast.Module, report: ScriptReport) -> None:
    if report.style == STYLE_MODERN:
        for node in tree.body:
            if isinstance(node, ast.AsyncFunctionDef) and node.name == "interpret":
                report.add(f"interpret must be a plain function, not async (line {node.lineno})", node.lineno)
            if isinstance(node, ast.FunctionDef) and node.name == "interpret":
                a = node.args
                positional = len(a.posonlyargs) + len(a.args)
                required_kw = [k for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
                if (positional < 4 and a.vararg is None) or required_kw:
                    report.add(
                        "interpret must accept (outputs, frame, labels, context) "
                        f"(line {node.lineno})",
                        node.lineno,
                    )
        return
    uses_results = any(isinstance(n, ast.Name) and n.id == "results" for n in ast.walk(tree))
    if not uses_results:
        report.add(
            "script defines no interpret(outputs, frame, labels, context) function and does not use "
            "the legacy `results` global (line 1)",
            1,
        )
