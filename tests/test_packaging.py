"""Packaging: what ``pip install .`` builds, and that the repository is self-contained.

The wheel is built the way pip builds it (``pip wheel . --no-deps --no-build-isolation``) from a
copy of the checkout's packaging inputs (so that setuptools' ``build/`` and ``*.egg-info`` never
land in the checkout), then installed with ``pip install --no-deps --target DIR`` and used from a
subprocess whose working directory is an empty temporary folder and whose ``PYTHONPATH`` is DIR
alone: the checkout is not on ``sys.path`` there, so the wheel must carry every subpackage and the
shipped weights (``stiffviz/data``) itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_FILES = ("digits-unet.safetensors", "digits-unet-weak.safetensors", "example-tree-heun8-erk.json")
SUBPACKAGES = ("stiffviz", "stiffviz/models", "stiffviz/solvers", "stiffviz/guidance", "stiffviz/diagnostics")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, failing the test with its output when it exits non-zero."""
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "stiffviz", source / "stiffviz", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheelhouse")
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)])
    (built,) = out.glob("stiffviz-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("target")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)])
    return target


def _isolated_env(target: Path) -> dict[str, str]:
    """The current environment with PYTHONPATH = ``target`` only."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(target)
    return env


def test_wheel_holds_every_subpackage_module_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    for name in DATA_FILES:
        member = f"stiffviz/data/{name}"
        assert member in sizes, f"{member} missing from the wheel"
        assert sizes[member] == (REPO / "stiffviz" / "data" / name).stat().st_size
    packages = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "stiffviz").rglob("__init__.py")}
    assert set(SUBPACKAGES) <= packages
    assert {f"{p}/__init__.py" for p in packages} <= set(sizes)
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "stiffviz").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= set(sizes), f"modules missing from the wheel: {sorted(modules - set(sizes))}"
    # nothing else: no tests, benchmarks or bytecode
    dist_info = wheel.name.split("-py")[0] + ".dist-info/"
    strays = [n for n in sizes if not n.startswith(("stiffviz/", dist_info)) or n.endswith(".pyc")]
    assert not strays, strays


def test_wheel_metadata_pins_torch_like_requirements_txt_and_declares_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as archive:
        dist_info = wheel.name.split("-py")[0] + ".dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert "Name: stiffviz" in metadata and "Version: 0.2.0" in metadata
    assert "Requires-Python: >=3.10" in metadata
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    space_pins = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("torch")]
    assert space_pins == ["torch==2.13.0"] and "torch==2.13.0" in requires
    for extra in ("app", "diffusers", "kdiffusion", "sweep", "dev"):
        assert f"Provides-Extra: {extra}" in metadata
    # sweeps' optional dependencies, and dev (what the CI installs) pulls them in
    sweep = {re.split(r"[ ;=<>\[]", r)[0].lower() for r in requires if 'extra == "sweep"' in r}
    assert sweep == {"ray", "pandas", "pyarrow", "tqdm", "pyyaml"}, sweep
    assert any(re.match(r"stiffviz\[[^]]*\bsweep\b", r) and 'extra == "dev"' in r for r in requires), requires
    assert any(r.startswith("playwright==1.65.2") and 'extra == "dev"' in r for r in requires)
    assert re.search(r"^\[console_scripts\]\s*\nstiffviz = stiffviz\.cli:main$", entry_points, re.M)


def test_installed_wheel_samples_from_an_unrelated_directory(installed, tmp_path):
    code = textwrap.dedent(
        """
        import json, sys
        import stiffviz
        model = stiffviz.load_model("digits-unet")
        x, trace = stiffviz.sample(model, steps=2, batch=2)
        files = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()
                 if name == "stiffviz" or name.startswith("stiffviz.")}
        print(json.dumps({"path": sys.path, "files": files, "shape": list(x.shape),
                          "finite": bool(x.isfinite().all()), "status": trace.status}))
        """
    )
    done = _run([sys.executable, "-c", code], cwd=tmp_path, env=_isolated_env(installed))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    on_path = {Path(p or tmp_path).resolve() for p in report["path"]}
    assert REPO not in on_path, "the checkout leaked onto sys.path"
    assert report["files"]["stiffviz"] is not None
    for name, file in report["files"].items():  # every stiffviz module came from the installed wheel
        assert file is None or Path(file).resolve().is_relative_to(installed.resolve()), (name, file)
    assert report["shape"] == [2, 1, 8, 8] and report["finite"] and report["status"] == "ok"


def test_console_script_returns_the_cli_exit_status(installed, tmp_path):
    script = installed / "bin" / "stiffviz"
    assert script.is_file(), sorted(p.name for p in installed.iterdir())
    env = _isolated_env(installed)
    ok = subprocess.run([str(script), "sample", "--model", "tree", "--steps", "2", "--batch", "8"],
                        capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "NFE 3" in ok.stdout  # Heun, 2 steps: 2·2 − 1 model calls
    bad = subprocess.run([str(script), "sample", "--steps", "0"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "steps" in bad.stderr


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    command = lines[-1].strip()
    assert "requirements-dev.txt" in command and "--no-deps -r requirements-reference.txt" in command
    assert command.endswith("python -m pytest -q")
    assert f"\n{command}\n" in (REPO / "README.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- self-contained
SCANNED = ("README.md", "app.py", "pyproject.toml", "requirements.txt", "requirements-dev.txt",
           "requirements-reference.txt", "docs", "stiffviz", "tests", "benchmarks", ".ci")  # fmt: skip
OUTSIDE = ("../shared", "shared/MATH", "MATH.md", "DESIGN.md")  # the project's private notes live outside it


def _scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        root = REPO / name
        candidates = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        files += [p for p in candidates if p.is_file() and "__pycache__" not in p.parts]
    return files


def test_no_file_points_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(REPO)}: {needle}"
        for path in _scanned_files()
        if path.resolve() != this
        for needle in OUTSIDE
        if needle.encode() in path.read_bytes()
    ]
    assert not offenders, offenders


def test_every_cited_section_of_docs_math_exists():
    headings = set(re.findall(r"^## (\d+)\. ", (REPO / "docs" / "math.md").read_text(encoding="utf-8"), re.M))
    assert {str(n) for n in range(1, 11)} <= headings
    cited = set()
    for path in _scanned_files():
        if path.suffix in (".py", ".md"):
            for first, last in re.findall(r"docs/math\.md §(\d+)(?:[–-](\d+))?", path.read_text(encoding="utf-8")):
                cited.update(str(n) for n in range(int(first), int(last or first) + 1))
    assert cited and cited <= headings, sorted(cited - headings)
