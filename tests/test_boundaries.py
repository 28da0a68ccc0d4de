"""Import rules (ARCHITECTURE.md): the core is numpy + stdlib, the service never imports training, and
training reaches into recsvc only through the artifact and the core.

Every `import` and `from ... import` in every module is read from the AST (including imports inside
functions), so a lazy import cannot slip past the rule.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
SERVICE_ONLY = ("flask", "redis", "marshmallow", "gunicorn", "apispec", "prometheus_client", "werkzeug")
TRAINING_ONLY = ("implicit", "lightfm", "scipy", "pandas", "pyarrow", "tqdm")  # matplotlib: the service draws charts too


def modules(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: list[str] | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; relative imports resolved against
    `package` (default: the file's own package in this repository)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if package is None:
        package = module_name(path).split(".")
        if path.name != "__init__.py":
            package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def violations(package: str, allowed) -> list[str]:
    bad = []
    for path in modules(package):
        for line, name in imports(path):
            if not allowed(name):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_scan_sees_lazy_and_relative_imports(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text("import os, numpy as np\n"
                   "def f():\n"
                   "    import flask\n"
                   "    from . import scoring\n"
                   "    from ..artifact.manifest import SEEN\n"
                   "    from training.io import load_dataset\n", encoding="utf-8")
    assert imports(src, ["recsvc", "core"]) == [
        (1, "os"), (1, "numpy"), (3, "flask"), (4, "recsvc.core"), (5, "recsvc.artifact.manifest"),
        (6, "training.io")]


CHART = "recsvc/core/experiment_chart.py"  # the experiment report's PNG, shared by the service and training
ANN = "recsvc/core/ann.py"  # the approximate index of large catalogues (faiss), built by training, read by serving
# the only libraries beyond numpy the core may use: each in one module, imported inside functions
LAZY_EXCEPTIONS = {CHART: "matplotlib", ANN: "faiss"}


def test_core_imports_only_numpy_stdlib_core_and_the_manifest():
    def allowed(name: str) -> bool:
        top = name.split(".")[0]
        return (top in STDLIB or top == "numpy" or under(name, "recsvc.core")
                or name == "recsvc.artifact.manifest")

    def excepted(b: str) -> bool:
        path, _, rest = b.partition(":")
        lib = LAZY_EXCEPTIONS.get(path)
        return lib is not None and (rest.endswith(f" imports {lib}") or f" imports {lib}." in rest)

    bad = violations("recsvc/core", allowed)
    # the exceptions: the chart draws with matplotlib's Agg canvas, the ANN module searches with faiss
    assert [b for b in bad if not excepted(b)] == []
    for path, lib in LAZY_EXCEPTIONS.items():
        tree = ast.parse((ROOT / path).read_text())
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not any(lib in ast.dump(n) for n in top_level), f"{path} must import {lib} lazily"


def test_core_imports_no_web_store_or_training_library():
    def allowed(name: str) -> bool:
        return not (under(name, *SERVICE_ONLY, *TRAINING_ONLY) or under(name, "training"))

    assert violations("recsvc/core", allowed) == []


def test_service_never_imports_training():
    assert violations("recsvc", lambda name: not under(name, "training")) == []


def test_training_uses_only_the_artifact_and_the_core_of_recsvc():
    def allowed(name: str) -> bool:
        return not under(name, "recsvc") or under(name, "recsvc.artifact", "recsvc.core")

    assert violations("training", allowed) == []


def test_importing_the_core_loads_no_service_or_training_library():
    """The rule holds at run time too: nothing the core imports drags in Flask, Redis or a learner."""
    code = ("import sys\n"
            "import recsvc.core, recsvc.core.ranking, recsvc.core.batch, recsvc.core.foldin, recsvc.artifact\n"
            f"bad = {SERVICE_ONLY + TRAINING_ONLY + ('training', 'faiss', 'matplotlib')!r}\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(bad))))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ""
