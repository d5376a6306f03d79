"""House rules of the package sources, checked on their syntax trees (no imports, no runs).

* Size: a module outside ``bt_ibkr/gateway_sim`` has at most 600 lines, every module at most
  700 (a longer one gets split along its seams into modules named for their role).
* Privacy: a module reads or writes private attributes (``x._name``, not dunders) only of
  ``self``/``cls`` (or a local alias of ``self``), ``super()``, or a class/function/variable
  it defines itself; ``getattr``/``setattr``/``hasattr`` with a literal private name count
  too. Another object's private state is reached through a public query instead.
* Layers: ``bt_ibkr/ib`` never imports ``feeds`` (not even by a module name in a string).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bt_ibkr", "feeds", "analyzers", "strategies", "bench", "examples")
MAX_LINES = 600
MAX_LINES_ANYWHERE = 700
SIMULATOR = "bt_ibkr/gateway_sim/"

#: backtrader's own API spelled with a leading underscore (its names, not ours to rename)
BACKTRADER_NAMES = {
    "_name",  # a data feed's name (cerebro.adddata(name=...))
    "_getkeys", "_getdefaults", "_getitems",  # a params class's introspection
    "_laststatus", "_getstatusname",  # a live feed's last notified status and its name
    "_timeframe", "_compression", "_tz",  # a feed's effective timeframe, compression, zone
    "_env", "_event_stop",  # the Cerebro a feed runs in, and its stop flag
    "_start",  # DataBase._start(): start a feed (IBData starts its backfill_from feed)
    "_debug",  # IBStore's parameter name, kept from backtrader's IBStore
}

#: (module, attribute) pairs allowed elsewhere, each with its reason; keep this short
ALLOWED = {
    # the simulator's test harness and frame server drive the server they own
    ("bt_ibkr/gateway_sim/harness.py", "_driver"),
    ("bt_ibkr/gateway_sim/harness.py", "_drive"),
    ("bt_ibkr/gateway_sim/frames.py", "_emitted"),
    # marks the handlers bt_ibkr added to the root logger (to replace them, not others')
    ("bt_ibkr/logs.py", "_bt_ibkr"),
}

ATTR_FUNCS = {"getattr", "setattr", "hasattr", "delattr"}


def modules() -> list[tuple[str, str]]:
    """Return (path relative to the repo, source) of every package module."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
    assert len(out) > 50, "the package sources were not found"
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.Module) -> set[str]:
    """Names the module defines at its top level (not the ones it imports)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _self_aliases(tree: ast.Module) -> set[str]:
    """Names bound to ``self`` (``server = self``, for a class defined inside a method)."""
    return {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Name) and node.value.id == "self"
            for t in node.targets if isinstance(t, ast.Name)}


def private_reaches(path: str, source: str) -> list[str]:
    """Return ``path:line: expression`` for each private attribute of another object."""
    tree = ast.parse(source)
    mine = {"self", "cls"} | _self_aliases(tree) | _own_names(tree)

    def allowed(owner: ast.expr, attr: str) -> bool:
        if not _private(attr) or attr in BACKTRADER_NAMES or (path, attr) in ALLOWED:
            return True
        if isinstance(owner, ast.Name) and owner.id in mine:
            return True
        return (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                and owner.func.id == "super")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not allowed(node.value, node.attr):
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ATTR_FUNCS and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and not allowed(node.args[0], node.args[1].value)):
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_modules_stay_small():
    too_long = []
    for path, source in modules():
        n = len(source.splitlines())
        limit = MAX_LINES_ANYWHERE if path.startswith(SIMULATOR) else MAX_LINES
        if n > limit:
            too_long.append(f"{path}: {n} lines (at most {limit})")
    assert not too_long, "split these along their seams:\n" + "\n".join(too_long)


def test_no_module_reaches_into_another_objects_private_attributes():
    found = [hit for path, source in modules() for hit in private_reaches(path, source)]
    assert not found, "add a public query instead:\n" + "\n".join(found)


def test_the_check_sees_a_private_reach_and_lets_self_pass():
    source = (
        "class A:\n"
        "    def f(self, other):\n"
        "        self._x = other._y\n"
        "        return getattr(other, '_z', None), super()._w, self.__dict__\n"
    )
    assert [h.split(": ", 1)[1] for h in private_reaches("m.py", source)] == [
        "other._y", "getattr(other, '_z', None)"]


MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _imports(tree: ast.Module) -> list[str]:
    """Return the modules ``tree`` imports, and every string that is a bare dotted module
    name (what ``importlib.import_module`` would be given, wherever it is kept)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and MODULE_NAME.fullmatch(node.value)):
            names.append(node.value)
    return names


def test_the_import_check_sees_a_module_loaded_by_name():
    source = "import importlib\nDATA = 'feeds.ibdata'\nimportlib.import_module(DATA)\n"
    assert "feeds.ibdata" in _imports(ast.parse(source))


def test_the_ib_layer_never_imports_feeds():
    found = [f"{path}: {name}" for path, source in modules() if path.startswith("bt_ibkr/ib/")
             for name in _imports(ast.parse(source))
             if name == "feeds" or name.startswith("feeds.")]
    assert not found, "bt_ibkr/ib sits below feeds/:\n" + "\n".join(found)
