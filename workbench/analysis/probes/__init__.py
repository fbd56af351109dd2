"""Linear probes: how linearly decodable is a clip attribute (pitch class, category, ...) at each site of a PAL
model: encoder outputs, connector outputs, the residual stream per layer at chosen text positions, and the
audio keys/values of LAL layers.

    suite = load_suite("probes/pitch.yaml")
    df, fig = run_suite(suite, model, dataset, out_dir="results/pal")

Pipeline (each step is a function of its own, so notebooks can reuse them):

1. :func:`prepare_clips`: one row per clip (dedupe by ``file_name``), the attribute as label (clips where
   it is null are dropped), every clip asked the *same* question (default "What do you hear?"), so the
   text is identical across clips and only the audio can carry the label.
2. :func:`resolve_sites`: the suite's ``sites`` section -> a list of :class:`Site` (checked against the
   model: unknown encoder / hook, layer out of range, K/V at a layer without LAL audio -> clear errors).
3. :func:`collect_activations`: one :func:`workbench.analysis.core.collect` call per batch with every hook
   name at once; each site is pooled to one vector per clip and appended to its own raw file in a run
   folder (:class:`ActivationStore`), so memory holds one batch of activations, never all layers x all clips.
4. :func:`fit_probes`: one site at a time read back from disk; a standardised scikit-learn probe
   (LogisticRegression for classes, Ridge for numbers), out-of-fold predictions over (Stratified)KFold;
   accuracy (or R^2) with a bootstrap 95% CI over clips; the majority-class (or mean) baseline through the
   same folds; a Hewitt & Liang control task (each distinct input identity, by default the clip, gets a
   random label, the identities' real labels permuted among them; or shuffled rows) fitted the same way;
   selectivity = metric - control.
5. :func:`probe_figure`: metric per layer with CI bands, encoder/connector sites as markers on the left,
   majority and control as reference lines.

Pooling per site kind: ``encoder`` mean over the encoder's valid frames; ``connector`` / ``audio_in``
mean over the valid audio tokens; ``audio_k`` / ``audio_v`` mean over the valid audio keys of that layer
(all LAL encoders visible there), heads flattened; ``resid`` (``blocks.{l}.hook_resid_pre/mid/post``,
``hook_attn_out``, ``hook_mlp_out``) at a text position: ``last_prompt`` (last token before the answer),
``slot_after`` (first text token after the audio slot), ``mean_after_slot`` (mean over the prompt's text
tokens from the slot on), ``before_slot`` (last text token before the slot: causally blind to the audio, a
built-in negative control).

Modules (each step's code; everything is importable from ``workbench.analysis.probes``):
``suite`` (YAML suites and the sites they select), ``store`` (clips with one fixed question, activation
collection streamed to an on-disk store), ``fit`` (scikit-learn probes, control tasks, bootstrap CIs),
``figures`` (:func:`probe_figure`); :func:`run_suite` here runs them end to end, :func:`run_probe_command`
is ``python -m workbench.probe``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import shutil
import sys
from pathlib import Path

from workbench.analysis.core import default_out_dir, load_for_analysis
from workbench.analysis.probes.figures import probe_figure
from workbench.analysis.probes.fit import NearConstantFilter, control_labels, fit_probes
from workbench.analysis.probes.store import ActivationStore, ClipSet, collect_activations, prepare_clips
from workbench.analysis.probes.suite import POSITIONS, ProbeError, ProbeSuite, Site, load_suite, resolve_sites

log = logging.getLogger(__name__)

__all__ = [
    "ProbeError",
    "ProbeSuite",
    "Site",
    "ClipSet",
    "ActivationStore",
    "POSITIONS",
    "load_suite",
    "resolve_sites",
    "prepare_clips",
    "collect_activations",
    "fit_probes",
    "probe_figure",
    "run_suite",
    "control_labels",
    "NearConstantFilter",
    "run_probe_command",
]


def _activations_base(suite: ProbeSuite, out_dir, activations_dir) -> Path:
    """Where the activations go: ``activations_dir``, else a hidden folder in ``out_dir``, else a temp folder."""
    if activations_dir:
        return Path(activations_dir)
    if out_dir is not None:
        return Path(out_dir) / f".probe_{suite.name}_activations"
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"probe_{suite.name}_"))


def _collect_and_fit(suite: ProbeSuite, model, clips, sites, base: Path, backend, batch_size, progress):
    """Stream the sites' activations of ``clips`` to ``base`` and fit one probe per site -> the probe table."""
    store = collect_activations(
        model,
        clips,
        sites,
        base,
        backend=backend,
        batch_size=batch_size or suite.batch_size,
        dtype=suite.storage_dtype,
        progress=progress,
    )
    return fit_probes(
        store,
        clips.labels,
        clips.identities,
        task=clips.task,
        folds=suite.folds,
        seed=suite.seed,
        estimator=suite.estimator,
        control=suite.control,
        bootstrap=suite.bootstrap,
        attribute=suite.attribute,
        progress=progress,
    )


def run_suite(
    suite: ProbeSuite,
    model,
    dataset,
    *,
    out_dir: str | os.PathLike | None = None,
    activations_dir: str | os.PathLike | None = None,
    keep_activations: bool = False,
    n: int | None = None,
    backend: str = "transformer_lens",
    batch_size: int | None = None,
    seed: int | None = None,
    progress: bool = False,
    write: bool = True,
):
    """Prepare clips, resolve sites, collect (streamed to disk), fit, plot; write ``probe_<name>`` csv/html/png
    into ``out_dir`` (when given and ``write``). Returns (df, fig)."""
    from workbench.analysis.core import write_outputs

    if seed is not None:
        suite = copy.copy(suite)
        suite.seed = seed
    sites = resolve_sites(suite, model)
    clips = prepare_clips(
        dataset,
        suite.attribute,
        question=suite.question,
        task=suite.task,
        n=n,
        identity=suite.control.get("identity", "file_name"),
    )
    log.info("probing %s on %d clips, %d sites", suite.attribute, len(clips), len(sites))
    base = _activations_base(suite, out_dir, activations_dir)
    try:
        df = _collect_and_fit(suite, model, clips, sites, base, backend, batch_size, progress)
    finally:
        if not keep_activations and not activations_dir:
            shutil.rmtree(base, ignore_errors=True)
    df.insert(0, "suite", suite.name)
    fig = probe_figure(df)
    if out_dir is not None and write:
        write_outputs(df, fig, out_dir, f"probe_{suite.name}")
    return df, fig


def run_probe_command(args: argparse.Namespace) -> int:
    """``python -m workbench.probe`` with parsed arguments ``args``: every suite on one model and dataset, each
    written to ``OUT_DIR/probe_<suite>.csv`` (+ figure) with its best sites printed; a suite that does not fit
    is reported on stderr and the others still run. Its exit code (2 when a suite failed)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    suites = [load_suite(p) for p in args.suites]
    model, dataset = load_for_analysis(
        args.checkpoint, args.data, None, seed=args.seed or 0, cache_dir=args.cache_dir, progress=not args.no_progress
    )
    out = default_out_dir(args)
    status = 0
    for suite in suites:
        try:
            keep = f"{args.keep_activations}/{suite.name}" if args.keep_activations else None
            df, _ = run_suite(
                suite,
                model,
                dataset,
                out_dir=out,
                activations_dir=keep,
                n=args.n,
                backend=args.backend,
                batch_size=args.batch_size,
                seed=args.seed,
                progress=not args.no_progress,
            )
        except ProbeError as e:  # a suite that does not fit this model / dataset: report it, run the others
            print(f"error in {suite.source}: {e}", file=sys.stderr)
            status = 2
            continue
        best = df.sort_values("value", ascending=False).head(5)
        print(
            f"\n{suite.name} ({suite.attribute}, {df['metric'].iloc[0]}, n={df['n'].iloc[0]}, "
            f"majority {df['majority'].iloc[0]:.3f}) -> {out}/probe_{suite.name}.csv"
        )
        print(
            best[["site", "value", "ci_low", "ci_high", "control", "selectivity"]].to_string(
                index=False, float_format="%.3f"
            )
        )
    return status
