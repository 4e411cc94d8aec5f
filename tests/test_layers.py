"""The import graph (docs/design.md): geometry at the bottom, then datamodules and
lightning_modules, then callbacks, then loclin on top. No module imports from a layer above its
own, and no modules import each other in a circle. Read from the source with ``ast``, so an
import inside a function counts as well."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYER = {"geometry": 0, "datamodules": 1, "lightning_modules": 1, "callbacks": 2, "loclin": 3}
FOLDERS = tuple(package for package in LAYER if package != "loclin")  # loclin.<folder> when installed


def module_of(name: str) -> str | None:
    """The repository module ``name`` refers to (a package's __init__ as the package), if any, by
    its folder: ``loclin.geometry.window`` is ``geometry.window`` (loclin/__init__.py)."""
    parts = name.split(".")
    if parts[0] == "loclin" and len(parts) > 1 and parts[1] in LAYER:
        parts = parts[1:]
    if parts[0] not in LAYER:
        return None
    while parts:
        path = REPO.joinpath(*parts)
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for package in LAYER:
        for file in sorted((REPO / package).rglob("*.py")):
            dotted = ".".join(file.relative_to(REPO).with_suffix("").parts)
            name = dotted.removesuffix(".__init__")
            targets = set()
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                targets |= {m for m in map(module_of, names) if m and m != name}
            graph[name] = targets
    return graph


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]]
    )


def in_circles(graph: dict[str, set[str]]) -> list[str]:
    """The modules that reach themselves through their imports."""

    def reaches(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for target in graph.get(stack.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    return sorted(m for m in graph if m in reaches(m))


def test_no_module_imports_from_a_layer_above_its_own():
    graph = import_graph()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 50  # the walk found the code and its imports
    assert upward_arrows(graph) == []


def bare_imports(file: Path, root: Path = REPO) -> list[str]:
    """The modules ``file`` imports by a folder's own top-level name (``callbacks.base``)."""
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{file.relative_to(root)}: {name}" for name in names if name.split(".")[0] in FOLDERS]
    return found


def test_every_import_of_a_loclin_folder_goes_through_the_loclin_namespace(tmp_path):
    """Installed, geometry/, callbacks/, datamodules/ and lightning_modules/ exist only as
    loclin.geometry, …: a bare ``from callbacks.base import …`` would work in a checkout and fail
    in the wheel (and collide with a user's own callbacks.py)."""
    files = [REPO / "train.py", REPO / "analyze.py", *REPO.glob("benchmarks/*.py"), *REPO.glob("tests/**/*.py")]
    files += [file for package in LAYER for file in (REPO / package).rglob("*.py")]
    assert len(files) > 100 and [bare for file in files for bare in bare_imports(file)] == []
    planted = tmp_path / "planted.py"
    planted.write_text("from loclin.geometry.window import VectorWindow\nfrom callbacks.base import metric\n")
    assert bare_imports(planted, tmp_path) == ["planted.py: callbacks.base"]


def test_no_import_circles():
    assert in_circles(import_graph()) == []


def test_the_checks_find_a_planted_upward_import_and_circle():
    graph = import_graph()
    graph["geometry.capture"] = graph["geometry.capture"] | {"loclin.reports.report"}
    graph["loclin.reports.tables"] = graph["loclin.reports.tables"] | {"loclin.reports.report"}  # report imports tables
    assert upward_arrows(graph) == ["geometry.capture -> loclin.reports.report"]
    assert {"loclin.reports.report", "loclin.reports.tables"} <= set(in_circles(graph))


ONE_NAME = """
import importlib, pkgutil, sys
import loclin
names = [m.name for m in pkgutil.walk_packages(loclin.__path__, "loclin.")]
assert len(names) == len(set(names)) and len(names) > 20, names
for name in names + ["loclin.geometry.window", "loclin.callbacks.base", "loclin.datamodules", "loclin.conf"]:
    if not name.endswith("__main__"):  # importing a __main__ runs its program (python -m loclin)
        importlib.import_module(name)
for name in ("loclin.loclin", "loclin.loclin.config", "loclin.tests", "loclin.benchmarks", "loclin.docs"):
    try:
        importlib.import_module(name)
        raise SystemExit(f"{name} is importable")
    except ModuleNotFoundError:
        pass
import loclin.geometry.window as window
from loclin.config import packaged_configs
print(window.__file__, sorted(packaged_configs())[0], len(names))
"""


def check_one_name_per_module(python: str, cwd: Path, env: dict | None = None) -> list[str]:
    """Runs ONE_NAME in a fresh interpreter: walking loclin ends with each module named once, every
    name it lists imports, and no second name (``loclin.loclin``, ``loclin.tests``) resolves."""
    import subprocess

    done = subprocess.run([python, "-c", ONE_NAME], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_each_module_has_one_import_name_in_a_checkout():
    import sys

    window, first_config, walked = check_one_name_per_module(sys.executable, REPO)
    assert Path(window) == REPO / "geometry" / "window.py" and first_config == "lora_distilgpt2"
    modules = [file for file in (REPO / "loclin").rglob("*.py") if file.stem != "__init__"]
    subpackages = [folder for folder in (REPO / "loclin").rglob("__init__.py") if folder.parent != REPO / "loclin"]
    assert int(walked) == len(modules) + len(subpackages)  # each module and sub-package once


LONG_FILE = 400  # lines: a module longer than this does more than one job, unless its docstring says why not


def test_no_module_is_longer_than_the_long_file_limit_without_saying_why():
    lengths = {
        file.relative_to(REPO).as_posix(): len(file.read_text().splitlines())
        for package in LAYER
        for file in (REPO / package).rglob("*.py")
    }
    assert len(lengths) > 80  # the walk found the code
    too_long = {
        name: n
        for name, n in lengths.items()
        if n > LONG_FILE and "reads better whole" not in (REPO / name).read_text()[:3000]
    }
    assert not too_long, too_long


ROOMS = (  # loclin/ by role, lowest first: a module imports only from its own room or a room below
    ("config", ("loclin.schema", "loclin.config", "loclin.assets**", "loclin.model_source", "loclin.tiny_models",
                "loclin.protocols", "loclin.protocols.registry", "loclin.protocols.*", "loclin.protocols.*.config")),
    ("runs", ("loclin.runs**",)),
    ("tables", ("loclin.reports.tables", "loclin.reports.run_tables", "loclin.reports.readings")),
    ("protocols", ("loclin.protocols**",)),
    ("reports", ("loclin.reports**", "loclin.claims**")),
    ("commands", ("loclin", "loclin.train", "loclin.analyze", "loclin.sweep", "loclin.cli", "loclin.__main__",
                  "loclin.monitor", "loclin.hf")),
)  # fmt: skip


def room_of(module: str) -> int | None:
    """The room of a loclin module, by its first matching pattern: ``*`` is one name
    (``loclin.protocols.*`` is a protocol package's own ``__init__``), a trailing ``**`` the
    package and everything in it."""
    import re

    for index, (_, patterns) in enumerate(ROOMS):
        for pattern in patterns:
            regex = re.escape(pattern).replace(r"\*\*", r"(\..+)?").replace(r"\*", r"[^.]+")
            if re.fullmatch(regex, module):
                return index
    return None


def test_loclin_is_in_rooms_by_role_and_none_imports_from_a_room_above_its_own():
    graph = {name: targets for name, targets in import_graph().items() if name.startswith("loclin")}
    unplaced = sorted(name for name in graph if room_of(name) is None)
    assert not unplaced and len(graph) > 60
    upward = sorted(
        f"{a} ({ROOMS[room_of(a)][0]}) -> {b} ({ROOMS[room_of(b)][0]})"
        for a, targets in graph.items()
        for b in targets
        if b.startswith("loclin") and room_of(b) > room_of(a)
    )
    assert upward == []
    assert room_of("loclin.protocols.recovery.config") == 0 and room_of("loclin.protocols.recovery.hooks") == 3
    assert room_of("loclin.protocols.steer") == 0 and room_of("loclin.reports.maps.c4") == 4  # the patterns bite


def test_no_source_file_is_hidden_by_the_ignore_rules():
    """A clean clone has every module: none under the package folders is matched by .gitignore
    (``runs/``, the run outputs, once hid loclin/runs/)."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (REPO / ".git").exists():
        return  # an installed wheel or an export: nothing to compare
    files = [file.relative_to(REPO).as_posix() for package in LAYER for file in (REPO / package).rglob("*.py")]

    def ignored(paths: list[str]) -> list[str]:
        command = ["git", "check-ignore", "--no-index", *paths]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True).stdout.split()

    assert len(files) > 80 and ignored(files) == []
    assert ignored(["runs/x.py", "loclin/runs/grid.py"]) == ["runs/x.py"]  # run outputs stay ignored


def test_the_wheel_lists_every_package_under_loclin():
    """pyproject's ``packages`` names every folder of loclin/ that has an ``__init__.py`` (a folder
    missing there is missing from the wheel; tests/test_install.py builds one)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "loclin").rglob("__init__.py")}
    assert len(folders) > 8 and folders <= listed, sorted(folders - listed)
