"""Security properties checked on the code itself (AST), so a later change cannot quietly undo them."""

import ast
from pathlib import Path

from tests.tiny import REPO

PACKAGES = ("edge_runtime", "train", "convert", "benchmarks")


def python_files(*packages: str):
    for package in packages:
        yield from sorted((REPO / package).rglob("*.py"))


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_every_torch_load_is_weights_only():
    found = 0
    for path in python_files(*PACKAGES):
        for node, name in calls(ast.parse(path.read_text())):
            if name == "torch.load":
                found += 1
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("weights_only") == "True", f"{path}:{node.lineno} torch.load without weights_only=True"
    assert found >= 2  # checkpoints and training state are loaded somewhere


def test_no_subprocess_runs_through_a_shell():
    for path in python_files(*PACKAGES):
        for node, name in calls(ast.parse(path.read_text())):
            if name.startswith(("subprocess.", "os.system", "os.popen")):
                assert not name.startswith(("os.system", "os.popen")), f"{path}:{node.lineno} {name}"
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("shell", "False") == "False", f"{path}:{node.lineno} shell=True"


def test_edge_runtime_never_imports_pickle_torch_or_tensorflow():
    banned = {"pickle", "torch", "tensorflow", "dill", "joblib"}
    for path in python_files("edge_runtime"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            assert not banned & set(names), f"{path}:{node.lineno} imports {names}"


def test_service_runs_as_a_non_root_user_and_restarts_on_failure():
    unit = (REPO / "deploy" / "kws-edge.service").read_text()
    users = [line.split("=", 1)[1].strip() for line in unit.splitlines() if line.startswith("User=")]
    assert users and all(user not in ("root", "0") for user in users)
    assert "Restart=on-failure" in unit
    install = (REPO / "deploy" / "install.sh").read_text()
    assert "useradd --system" in install and "-G audio" in install
    assert Path(REPO / "deploy" / "install.sh").stat().st_mode & 0o111, "install.sh must be executable"
