"""The package's layering, checked on its source: no import cycles; the runtime imports neither
the training kit nor the shells (CLI, web app, batch); the grounding rules are registered in
one list each."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "captioner"
SHELLS = {"captioner.cli", "captioner.webapp", "captioner.batch", "captioner.engines", "captioner.live",
          "captioner.__main__"}  # thin layers over pipeline: they import the runtime, never the reverse


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The captioner modules ``path`` imports (``from . import x`` resolved; under ``if
    TYPE_CHECKING`` left out: not imported at run time). ``top_level_only``: what runs at import."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("captioner"):
                    found.add(target)
                    found.update(f"{target}.{a.name}" for a in child.names if (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                                 or (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/") / "__init__.py").exists())
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("captioner"))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if not (top_level_only and nested):
                visit(child, depth + nested)

    visit(tree, 0)
    return {m for m in found if m != name}


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_no_import_cycles():
    graph = {name: {m for m in imports(path, top_level_only=True) if m in modules()} for name, path in modules().items()}
    cycles, state = [], {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    # a package imports its own modules, and they import the package back for its names: fine
    cycles = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") or c[0].startswith(m + ".")
                                            for m in c)]
    assert cycles == []


def test_runtime_imports_neither_training_nor_shells():
    runtime = {name: path for name, path in modules().items()
               if not name.startswith("captioner.training") and name not in SHELLS}
    offenders = sorted(f"{name} imports {m}" for name, path in runtime.items() for m in imports(path, top_level_only=False)
                       if m.startswith("captioner.training") or m in SHELLS)
    assert offenders == []


def test_every_grounding_rule_is_registered():
    """A rule is one class in grounding.search / grounding.sentences and one entry in its list."""
    from captioner.grounding import search, sentences

    filters = {type(f) for f in search.WORD_FILTERS}
    checks = {type(c) for c in sentences.SENTENCE_CHECKS} | {type(r) for r in sentences.SENTENCE_REWRITES}
    defined_filters = {c for c in vars(search).values() if isinstance(c, type) and hasattr(c, "apply")
                       and c.__module__ == search.__name__ and c.__name__ not in ("WordFilter", "WordOdds")}
    defined_checks = {c for c in vars(sentences).values() if isinstance(c, type) and c.__module__ == sentences.__name__
                      and (hasattr(c, "accepts") or hasattr(c, "rewrite"))
                      and c.__name__ not in ("SentenceCheck", "SentenceRewrite")}
    assert defined_filters == filters and defined_checks == checks
