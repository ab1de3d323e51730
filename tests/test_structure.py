"""The layout's rules, checked from the code itself: who imports what, what each DVC stage
declares, strict params, and training without the media stack."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.artifacts import PATHS, RUN_FILES
from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "extractors", "model")
# Bookkeeping that changes no feature or metric: argument parsing, params parsing, error
# classes, lineage records. Not required as DVC deps (else every edit re-runs everything).
BOOKKEEPING = {"pipeline", "pipeline.__main__", "pipeline.cli", "pipeline.params", "pipeline.errors",
               "pipeline.lineage", "pipeline.stages", "model.errors", "extractors", "model"}
STAGE_MODULE = {"demo": "demo", "ingest": "ingest", "text": "text", "audio": "media", "visual": "media",
                "align": "align", "export": "exchange", "train": "train", "evaluate": "evaluate", "report": "report",
                "ship": "ship"}
PIPELINES = ("dvc.yaml", "data/shipped/dvc.yaml")   # the demo's, and the shipped model's (its own: repro skips it)


def module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports_of(name: str) -> set[str]:
    """Project modules ``name`` imports anywhere in its file (lazy imports inside functions too)."""
    tree = ast.parse(module_file(name).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(m)}


def closure(start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name in seen or name in BOOKKEEPING:
            continue
        seen.add(name)
        todo += imports_of(name)
    return seen


def all_modules():
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            yield ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


# The one module both libraries share: layers whose arithmetic is the same on every CPU. It is a
# leaf (torch only), so sharing it ties neither library to the other.
SHARED = "model.layers"


def test_libraries_import_no_pipeline_and_not_each_other():
    for name in all_modules():
        top = name.split(".")[0]
        if top == "pipeline":
            continue
        other = {"extractors": "model", "model": "extractors"}[top]
        bad = {m for m in imports_of(name) if m.split(".")[0] in ("pipeline", other) and m != SHARED}
        assert not bad, f"{name} imports {sorted(bad)}"
    assert {m.split(".")[0] for m in imports_of(SHARED)} <= {"__future__", "torch"}


def test_cli_only_parses_arguments():
    tree = ast.parse((ROOT / "pipeline" / "cli.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "argparse", "sys", "importlib", "pipeline.artifacts", "pipeline.errors"}


# Stages whose numbers depend on the CPU kernels that `python -m pipeline` pins before any
# stage loads (pipeline.numerics): a change of pin must re-run them.
COMPUTING_STAGES = {"ingest", "text", "audio", "visual", "align", "train", "evaluate", "report", "ship"}


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_dvc_deps_are_what_each_stage_imports(pipeline):
    stages = yaml.safe_load((ROOT / pipeline).read_text())["stages"]
    from extractors.registry import MEDIA_EXTRACTORS

    for stage, spec in stages.items():
        start = {f"pipeline.stages.{STAGE_MODULE[stage]}"}
        if stage in COMPUTING_STAGES:
            start.add("pipeline.numerics")
        if stage in MEDIA_EXTRACTORS:   # the registry names its modules as strings
            start |= {t.split(":")[0] for t in MEDIA_EXTRACTORS[stage]}
        needed = {module_file(m).relative_to(ROOT) for m in closure(start)}
        code_deps = [Path(d) for d in spec["deps"] if d.split("/")[0] in PACKAGES]
        uncovered = sorted(str(f) for f in needed if not any(f == d or d in f.parents for d in code_deps))
        assert not uncovered, f"stage {stage} imports {uncovered} but dvc.yaml does not list them"
        stale = sorted(str(d) for d in code_deps if not any(f == d or d in f.parents for f in needed))
        assert not stale, f"stage {stage} lists {stale} in dvc.yaml but does not import them"


def test_dvc_paths_are_the_artifact_table():
    text = (ROOT / "dvc.yaml").read_text()
    for key in ("manifest", "store", "coverage", "export", "history", "summary", "eval", "cache", "demo"):
        assert PATHS[key] in text, key
    for name in RUN_FILES.values():
        assert f"{PATHS['models']}/{name}" in text, name


BLOCKED = ("av", "cv2", "opensmile", "gensim")


def test_train_and_evaluate_run_without_media_libraries(tmp_path):
    from test_model import make_store

    blocker = tmp_path / "blocked"
    blocker.mkdir()
    for name in BLOCKED:
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is blocked: training must not need it')\n")
    np.savez(tmp_path / "store.npz", **make_store())
    (tmp_path / "params.yaml").write_text("model: {d: 16, K: 3, L: 2}\ntrain: {epochs: 2}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]))
    common = ["--params", str(tmp_path / "params.yaml"), "--store", str(tmp_path / "store.npz"),
              "--checkpoint", str(tmp_path / "m.pt")]
    for cmd in (["train", "--history", str(tmp_path / "h.csv"), "--summary", str(tmp_path / "s.json")],
                ["evaluate", "--out", str(tmp_path / "eval")]):
        done = subprocess.run([sys.executable, "-m", "pipeline", cmd[0], *common, *cmd[1:]], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()
    probe = "import pipeline.stages.exchange, pipeline.stages.train, model.train, sys; " \
            f"print(sorted(set(sys.modules) & {set(BLOCKED)!r}))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


TYPO_RUNS = {   # stage section -> the command line (paths need not exist: params are read first)
    "demo": ["demo", "--out", "{tmp}/demo"],
    "ingest": ["ingest", "--root", "{tmp}", "--out", "{tmp}/m.csv"],
    "transcribe": ["transcribe", "--root", "{tmp}", "--out", "{tmp}/t"],
    "text": ["text", "--manifest", "{tmp}/none.csv"],
    "audio": ["audio", "--manifest", "{tmp}/none.csv"],
    "visual": ["visual", "--manifest", "{tmp}/none.csv"],
    "export": ["export", "--store", "{tmp}/none.npz"],
    "model": ["train", "--store", "{tmp}/none.npz"],
    "train": ["train", "--store", "{tmp}/none.npz"],
    "evaluate": ["evaluate", "--store", "{tmp}/none.npz"],
    "report": ["report", "--store", "{tmp}/none.npz"],
}


@pytest.mark.parametrize("section", sorted(TYPO_RUNS))
def test_a_typo_in_any_params_key_fails_naming_it(section, tmp_path, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[section]["workres"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = [a.format(tmp=tmp_path) for a in TYPO_RUNS[section]] + ["--params", str(tmp_path / "params.yaml")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "workres" in err and (section in err or "reader takes no option" in err), err
    assert "Traceback" not in err
