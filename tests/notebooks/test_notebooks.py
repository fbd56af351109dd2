"""The notebooks in notebooks/: each one runs top to bottom on shrunken parameters (a cell injected right after
its ``parameters`` cell), draws its plotly figures and gets sane numbers; and every notebook is stored clean
(no outputs, no execution counts) so that commits carry no stale results.

The kernel is this interpreter (``sys.executable``), through a kernelspec written for the test, so a
``python3`` kernelspec elsewhere on the machine (user or system Jupyter paths) cannot swap the environment;
it runs torch on one thread (``PAL_NOTEBOOK_THREADS``, see THREADS). The whole module takes about 2.5 minutes
on the 2-core dev machine; the first notebook run on a fresh clone also generates data/synth-tiny/val and
cache/tokens (once).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
MARK = "__NOTEBOOK_CHECK__"
KERNEL = "pal-workbench-test"
# torch threads in the kernel: on a small machine shared with other jobs, two OpenMP threads that wait for a busy
# core made a forward 10x slower than one thread (4.3 s vs 0.44 s on the 2-core dev machine under load)
THREADS = int(os.environ.get("PAL_NOTEBOOK_THREADS", "1"))


@dataclass
class Case:
    params: dict  # overrides injected after the parameters cell (SAVE_PNG and OUT_DIR are added for every case)
    checks: dict  # name -> expression evaluated in the kernel at the end; the values come back as JSON
    figures: int  # at least this many plotly figures shown
    outputs: list = field(default_factory=list)  # files expected under OUT_DIR


CASES = {
    "00_quickstart.ipynb": Case(
        params={"N": 4, "BATCH_SIZE": 4, "MAX_NEW_TOKENS": 4},
        checks={"answers": "list(answers['model'])", "mass_max": "float(att['mass'].max())",
                "mass_min": "float(att['mass'].min())", "encoders": "sorted(att['encoder'].unique())",
                "n_layers": "int(att['layer'].nunique())", "nnsight_same": "bool(same)",
                "hooks": "len(model.hook_dict)", "ask": "[ex.answer, info.samplerate, info.channels]",
                "ask_mass": "float(ex.time_attention['weight'].sum())"},
        figures=3, outputs=["attention_layers.csv", "attention_layers.html", "ask.html"]),
    "01_delayed_integration.ipynb": Case(
        params={"N": 4, "BATCH_SIZE": 4, "SWEEP_LAYERS": [4, 20], "RESAMPLES": 200},
        checks={"diff": "float(headline[headline.task == 'all']['diff'].iloc[0])",
                "ci_low": "float(headline[headline.task == 'all']['ci_low'].iloc[0])",
                "delta": "{f'{r.encoder}@{r.layer_start}': r.delta for r in overall.itertuples()}",
                "mass_before_8": "float(attention[attention.encoder.str.startswith('delayed') "
                                 "& (attention.layer < 8)]['mass'].abs().max())",
                "seed_rows": "across_seeds[across_seeds.split == 'pooled'][['scope', 'n_seeds', 'diff', 'ci_low', "
                             "'verdict']].values.tolist()",
                "curve_layers": "{m: sorted(int(x) for x in g['layer']) for m, g in curve[curve.family == "
                                "'all attributes'].groupby('mode')}",
                "plits_gain_24": "layer_gains.query(\"mode == 'plits' and family == 'all attributes' and versus == "
                                 "'first' and layer == 24\")[['difference', 'ci_low', 'reading']].values.tolist()"},
        figures=4, outputs=["compare.csv", "attention_layers.csv", "ablation_sweep.html", "injection_layer_curve.csv"]),
    "02_attention_only.ipynb": Case(
        params={"N": 4, "BATCH_SIZE": 4, "ACCURACY": False, "RESAMPLES": 200},
        checks={"diff": "float(headline[headline.task == 'all']['diff'].iloc[0])",
                "checks": "{k: bool(v) for k, v in checks.items()}",
                "deltas": "both[(both.task == 'all') & (both.attribute == 'all')].set_index('mode')['delta'].to_dict()",
                "lal_audio_k": "list(cache_lal[f'blocks.{LAYER}.attn.hook_audio_k'].shape)"},
        figures=2, outputs=["ablation_ffn_vs_block.csv", "ablation_ffn.html"]),
    "03_encoder_ensemble.ipynb": Case(
        params={"N": 4, "BATCH_SIZE": 4, "ABLATION_LAYERS": [8], "PROBE_ATTRIBUTES": ["category", "noise_color"],
                "N_CLIPS": 16, "FOLDS": 3, "BOOTSTRAP": 50, "RESAMPLES": 200},
        checks={"diffs": "acc[acc.attribute == 'all'].query(\"task == 'all'\").set_index('pair')['diff'].to_dict()",
                "encoders": "sorted(att['encoder'].unique())",
                "ablated": "sorted(overall['encoder'].unique())",
                "probe_values": "probes['value'].tolist()", "probe_attributes": "sorted(probes['attribute'].unique())"},
        figures=5, outputs=["probes_encoders.csv", "ablation_per_encoder.csv", "compare_pal.html"]),
    "04_probing.ipynb": Case(
        params={"N_CLIPS": 12, "LAYERS": [8, 20], "BOOTSTRAP": 50, "BATCH_SIZE": 6},
        checks={"values": "df['value'].tolist()", "controls": "df['control'].tolist()",
                "majority": "float(df['majority'].iloc[0])", "kinds": "sorted(df['kind'].unique())",
                "layers": "sorted(int(x) for x in df['layer'].dropna().unique())"},
        figures=1, outputs=["probe_pitch.csv", "probe_pitch.html"]),
    "05_patching.ipynb": Case(
        params={"MAX_PAIRS": 2, "LAYERS": [8, 16], "BATCH_SIZE": 2},
        checks={"pairs": "len(pairs)", "all_restored": "summary[(summary.site == 'connector') & "
                                                      "(summary.encoder == 'all')]['restored'].tolist()",
                "layers": "sorted(int(x) for x in summary['layer'].unique())",
                "restored": "summary['restored'].tolist()"},
        figures=1, outputs=["patching.csv", "patching.html", "patching_items.csv"]),
    "06_listening_heads_and_steering.ipynb": Case(
        params={"N": 8, "N_TEST": 8, "K": 2, "DRAWS": 1, "ALPHAS": [1], "SILENCE": "zeros", "BATCH_SIZE": 8},
        checks={"n_heads": "len(scores)", "scores": "scores['score'].tolist()", "mass": "scores['audio_mass'].tolist()",
                "conditions": "sorted(ablation['condition'].unique())", "deltas": "ablation['delta'].tolist()",
                "val_alphas": "sorted(steering[(steering.split == 'val') & (steering['mode'] == 'resid')]['alpha'])",
                "gains": "gain['gain'].tolist()", "modes": "sorted(gain['mode'].unique())"},
        figures=3, outputs=["listening_heads.csv", "listening_ablation.csv", "steering.csv", "steering.html"]),
    "07_attribute_lens.ipynb": Case(
        params={"CHECKPOINTS": ["results/checkpoints/baseline/final", "results/checkpoints/lal/final"], "N": 6,
                "BATCH_SIZE": 6},
        checks={"variants": "sorted(frames)", "layers": "int(summary['layer'].nunique())",
                "conditions": "sorted(summary['condition'].unique())", "accuracy": "summary['accuracy'].tolist()",
                "prob": "summary['prob'].tolist()",
                "critical": "[x for x in summary['critical_median'].tolist() if x == x]",
                "positions": "sorted(summary['position'].unique())"},
        figures=1, outputs=["attribute_lens.csv", "attribute_lens.html"]),
    "08_sparse_autoencoders.ipynb": Case(
        params={"CHECKPOINTS": ["results/checkpoints/baseline/final", "results/checkpoints/lal/final"],
                "TRAIN_DATA": ("data/synth-tiny/val", "val", 120), "EVAL_DATA": [("data/synth-tiny/val", "val", 120)],
                "N_TRAIN_CLIPS": 24, "N_EVAL_CLIPS": 24, "WIDTH": 64, "K": 4, "STEPS": 40, "SAE_BATCH": 64,
                "LOSS_ROWS": 8, "RESAMPLES": 50, "ABLATE_COUNTS": [1, 2], "ALPHAS": [0, 4], "CAUSAL_ROWS": 16,
                "N_PAGES": 2, "STUDY_DIR": None},
        checks={"variants": "sorted(summary['variant'])", "ev": "summary['explained_variance'].tolist()",
                "l0": "summary['l0'].tolist()", "stab": "summary['stability_share_matched'].tolist()",
                "auroc": "scores['macro_auroc'].tolist()", "attributes": "sorted(scores['attribute'].unique())",
                "verdicts": "sorted(contrasts['verdict'].unique())", "n_ablated": "sorted(int(x) for x in curve['n_features'].unique())",
                "alphas": "steering['alpha'].tolist()", "pages": "len(list(index.parent.glob('feature_*.html')))"},
        figures=1, outputs=["study/sae_scores.csv", "study/sae_contrasts.csv", "pages/index.html"]),
}


def _finite(values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _check_00(v):
    assert len(v["answers"]) == 4 and all(isinstance(a, str) for a in v["answers"])
    assert 0 <= v["mass_min"] <= v["mass_max"] <= 1 and v["mass_max"] > 0
    assert v["encoders"] == ["mel", "whisper", "yamnet"] and v["n_layers"] == 30
    assert v["nnsight_same"] and v["hooks"] > 500
    answer, rate, channels = v["ask"]
    assert isinstance(answer, str) and answer and (rate, channels) == (44100, 2)
    assert 0 < v["ask_mass"] <= 3  # attention mass on each of the 3 encoders, mapped onto the clip's frames


def _check_01(v):
    # the committed evaluations: delayed beats baseline (results/README.md: +0.155 [+0.118, +0.189])
    assert 0.10 < v["diff"] < 0.21 and v["ci_low"] > 0
    assert v["mass_before_8"] == 0  # delayed's audio slots are dead before layer 8: never a key
    deltas = v["delta"]  # "variant@first ablated layer" -> change of the answer log-probability (nats)
    assert sorted(deltas) == ["baseline@20", "baseline@4", "delayed@20", "delayed@4"] and _finite(deltas.values())
    assert all(d < 0.5 for d in deltas.values())  # cutting the audio does not help the answers
    # the committed seed runs (results/README.md: +0.139 [+0.056, +0.222] over 3 seeds, every seed positive)
    rows = {scope: (n, diff, lo, verdict) for scope, n, diff, lo, verdict in v["seed_rows"]}
    assert rows["one seed"][0] == 1 and rows["all seeds"][0] >= 3
    assert 0.08 < rows["all seeds"][1] < 0.2 and rows["all seeds"][2] > 0 and rows["all seeds"][3] == "agree"
    # the committed injection-layer sweep: both modes at every fourth layer up to 24; PLITS@24 above PLITS@0
    assert v["curve_layers"] == {"lal": [0, 4, 8, 12, 16, 20, 24], "plits": [0, 4, 8, 12, 16, 20, 24]}
    [(gain, lo, reading)] = v["plits_gain_24"]
    assert 0.15 < gain < 0.4 and lo > 0 and reading == "higher"


def _check_02(v):
    assert 0.02 < v["diff"] < 0.09  # lal - delayed, committed (+0.052)
    assert v["checks"] and all(v["checks"].values())
    assert v["lal_audio_k"][1] == 8
    assert set(v["deltas"]) == {"ffn", "block"} and _finite(v["deltas"].values())


def _check_03(v):
    assert v["diffs"]["pal vs lal (LAL@8)"] > 0 and v["diffs"]["ensemble vs baseline (PLITS@0)"] > 0
    assert v["encoders"] == ["mel", "whisper", "yamnet"]
    assert v["ablated"] == ["all", "mel", "whisper", "yamnet"]
    assert v["probe_attributes"] == ["category", "noise_color"]
    assert len(v["probe_values"]) == 12 and all(0 <= x <= 1 for x in v["probe_values"])


def _check_04(v):
    assert v["kinds"] == ["audio_k", "audio_v", "connector", "encoder", "resid"] and v["layers"] == [8, 20]
    assert all(0 <= x <= 1 for x in v["values"] + v["controls"]) and 0 < v["majority"] < 1


def _check_05(v):
    assert v["pairs"] == 2 and v["layers"] == [-1, 8, 16]
    assert v["all_restored"] and abs(v["all_restored"][0] - 1) < 1e-4  # patching every encoder restores exactly 1
    assert _finite(v["restored"])


def _check_06(v):
    assert v["n_heads"] == 270 and min(v["scores"]) >= 0 and max(v["scores"]) > 0  # 30 layers x 9 heads
    assert all(0 <= m <= 1 + 1e-6 for m in v["mass"])
    assert v["conditions"] == ["random", "top-k", "top_minus_random"] and _finite(v["deltas"])
    assert v["val_alphas"] == [0, 1] and v["modes"] == ["heads", "resid"] and _finite(v["gains"])


def _check_07(v):
    assert v["variants"] == ["baseline", "lal"] and v["layers"] == 30
    assert v["conditions"] == ["audio", "blocked", "silence"]
    assert v["positions"] == ["audio:whisper", "last_prompt"]  # baseline is PLITS: its audio positions are read too
    assert all(0 <= x <= 1 for x in v["accuracy"] + v["prob"])
    assert all(0 <= c <= 29 for c in v["critical"])


def _check_08(v):
    assert v["variants"] == ["baseline", "lal"] and "category" in v["attributes"]
    assert all(0 < x < 1 for x in v["ev"]) and all(0 < x <= 4 for x in v["l0"])
    assert all(0 <= x <= 1 for x in v["stab"]) and all(0 <= x <= 1 for x in v["auroc"])
    assert set(v["verdicts"]) <= {"agree", "disagree", "inconclusive"}
    assert v["n_ablated"] == [1, 2] and v["alphas"] == [0.0, 4.0] and v["pages"] == 2


CHECKERS = {"00": _check_00, "01": _check_01, "02": _check_02, "03": _check_03, "04": _check_04, "05": _check_05,
            "06": _check_06, "07": _check_07, "08": _check_08}


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _parameters_index(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert "parameters" in cell.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
            return i
    raise AssertionError("no code cell")


# ---------------------------------------------------------------------------------------------- stored clean
def test_every_notebook_has_a_ci_case():
    assert sorted(p.name for p in _notebooks()) == sorted(CASES)


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing "
                       "(Jupyter: Edit > Clear Outputs of All Cells; or `jupyter nbconvert --clear-output --inplace`)")
    params = nb.cells[_parameters_index(nb)]
    assert "OUT_DIR" in params.source and "results/notebooks" in params.source
    names = {line.split("=")[0].strip() for line in params.source.splitlines()
             if "=" in line and not line.startswith("#")}
    assert set(CASES[path.name].params) <= names, "the CI overrides must name parameters the notebook has"


# ---------------------------------------------------------------------------------------------- execution
@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory):
    """A kernelspec that starts this interpreter (the venv's python) as the kernel."""
    d = tmp_path_factory.mktemp("kernels") / KERNEL
    d.mkdir()
    (d / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pal-workbench (test)", "language": "python"}))
    return [str(d.parent)]


def _inject(nb, case: Case, out_dir: Path):
    params = {**case.params, "SAVE_PNG": False, "OUT_DIR": str(out_dir)}
    src = ("# injected by tests/notebooks/test_notebooks.py: small CI run\n"
           f"import torch\ntorch.set_num_threads({THREADS})\n"
           + "\n".join(f"{k} = {v!r}" for k, v in params.items()))
    cell = nbformat.v4.new_code_cell(src)
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(_parameters_index(nb) + 1, cell)
    entries = "".join(f"    {k!r}: ({expr}),\n" for k, expr in case.checks.items())
    check = (f"import json as _json, sys as _sys\n_check = {{\n    'sys_prefix': _sys.prefix,\n{entries}}}\n"
             f"print({MARK!r} + _json.dumps(_check, default=str))")
    nb.cells.append(nbformat.v4.new_code_cell(check))


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs(name, kernel_dirs, tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    case = CASES[name]
    out_dir = tmp_path / "out"
    _inject(nb, case, out_dir)
    ksm = KernelSpecManager(kernel_dirs=kernel_dirs, ensure_native_kernel=False)
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(nb, km=km, kernel_name=KERNEL, timeout=600,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) on any error

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    figures = sum(PLOTLY_MIME in o.get("data", {}) for o in outputs)
    assert figures >= case.figures, f"{name}: {figures} plotly figures shown, expected >= {case.figures}"
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    assert MARK in text, f"{name}: no check output: {text[-2000:]}"
    values = json.loads(text.split(MARK, 1)[1].strip().splitlines()[0])
    assert values.pop("sys_prefix") == sys.prefix, "the notebook ran in another Python environment"
    for f in case.outputs:
        assert (out_dir / f).is_file(), f"{name}: {f} not written to OUT_DIR"
    CHECKERS[name[:2]](values)
