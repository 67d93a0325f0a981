"""The house of DESIGN.md, checked on the source: imports between kexue's packages point only downward, and no
library module imports the reproductions or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import kexue

SRC = Path(kexue.__file__).parent

#: Each top-level package or module of kexue and its floor: a module may import kexue code from its own package or
#: from packages on a lower floor. `nn` imports nothing of ours beyond the argument checks.
FLOORS: dict[str, int] = {
    "kexue": 0, "_validate": 0, "_io": 0,
    "env": 1,
    "nn": 2, "data": 2, "stats": 2, "optim": 2, "losses": 2, "classify": 2,
    "models": 3,
    "train": 4, "embed": 4, "generative": 4, "heads": 4,
    "reproduce": 5,
    "cli": 6,
    "__main__": 7,  # python -m kexue: runs the CLI
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kexue"


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported kexue module, line) for every import statement, at any depth of the file."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        is_pkg = rel.name == "__init__"
        module = ".".join(rel.parts[:-1] if is_pkg else rel.parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_pkg else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    targets = [".".join(base + ([node.module] if node.module else []))]
                else:
                    targets = [node.module or ""]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            out += [(module, t, node.lineno) for t in targets if t == "kexue" or t.startswith("kexue.")]
    return out


def test_every_package_has_a_floor():
    tops = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").exists())}
    tops = {"kexue" if t == "__init__" else t for t in tops}
    assert tops <= FLOORS.keys(), f"packages without a floor in this test: {sorted(tops - FLOORS.keys())}"


def test_imports_point_downward():
    assert len(_imports()) > 50  # the walk found kexue's imports
    upward = []
    for module, target, line in _imports():
        a, b = _package(module), _package(target)
        if a != b and FLOORS[b] >= FLOORS[a]:
            upward.append(f"{module}:{line} imports {target} ({a} on floor {FLOORS[a]}, {b} on {FLOORS[b]})")
    assert not upward, "\n".join(upward)
