"""The layout's rules, read from the source with `ast`: imports go one way (no circle in either
package, counting imports inside functions too), the product never imports the stack beside it,
and only config.py reads the environment."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest
from conftest import AIRFLOW_USERS, RUNNING_AIRFLOW

ROOT = Path(__file__).parent.parent
PACKAGES = {
    "bionicpro_etl": ROOT / "src" / "bionicpro_etl",
    "bionicpro_stack": ROOT / "stack" / "src" / "bionicpro_stack",
}


def modules(package: str) -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGES[package].rglob("*.py")):
        parts = path.relative_to(PACKAGES[package].parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path) -> Iterator[str]:
    """Every module `path` imports, wherever the import stands (also inside a function)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a package's `__init__` is the package)."""
    found = modules(package)
    return {
        name: {
            m for m in imported(path) if m in found and m != name and not name.startswith(m + ".")
        }
        for name, path in found.items()
    }


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_imports_go_one_way(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 10
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as circle:
        path = " <- ".join(circle.args[1])
        pytest.fail(f"an import circle in {package} (a <- b: b imports a): {path}")
    assert (
        order.index(
            f"{package}.__main__" if package == "bionicpro_stack" else "bionicpro_etl.pipeline"
        )
        > 0
    )


def test_the_product_never_imports_the_stack() -> None:
    product = [*modules("bionicpro_etl").values(), ROOT / "dags" / "reports_etl_dag.py"]
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in product
        for name in imported(path)
        if name.split(".")[0] == "bionicpro_stack"
    }
    assert not offending


def test_only_config_reads_the_environment() -> None:
    readers = set()
    for name, path in modules("bionicpro_etl").items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.add(name)
    assert readers == {"bionicpro_etl.config"}


def test_the_modules_that_use_the_running_airflow_share_a_worker(request: pytest.FixtureRequest):
    """The xdist scheduler (conftest.py) sees only test ids, so RUNNING_AIRFLOW is written by
    hand: a module that uses the running Airflow and is not in it would start a second one."""
    users = request.config.stash[AIRFLOW_USERS]
    assert users <= RUNNING_AIRFLOW, f"add {sorted(users - RUNNING_AIRFLOW)} to RUNNING_AIRFLOW"
