"""The one registry of the paper's claims, the only authority on the hypotheses: for each claim its contrasts (pairs
of variants that differ only in what the claim is about), the inside-the-model analyses that bear on it (the files
they write, the variant they run on, their kind and, for ablations, their settings: layers, mode, encoder), its
title, statement and scope, and which figures its report section shows. :mod:`workbench.pipeline.demo` runs exactly
the registered analyses, :mod:`workbench.claims.verdict`, :mod:`workbench.claims.seeds` and
:mod:`workbench.reporting.forest` decide and draw the registered contrasts, and :mod:`workbench.reporting.report`
routes every table by its registered name; adding a claim or a variant is one edit here.

An analysis's ``stem`` is the name of its outputs in a run folder (``STEM.csv``, ``STEM.html``, ``STEM.png``);
``figures`` of a claim are glob patterns over the run folder's figure stems, shown in that order. Analyses marked
``optional`` are shown when their files are there and are otherwise left out without a "missing" note (they are
written by steps that may not run, e.g. the newer analyses or the injection-layer curve before its runs exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.common.constants import VARIANTS  # the trained variants the claims contrast

__all__ = [
    "Ablate",
    "EACH",
    "Analysis",
    "Claim",
    "VARIANTS",
    "CLAIMS",
    "EXTRA",
    "LAYER_CURVE_STEM",
    "COMPARE_STEM",
    "CONTRASTS_STEM",
    "SEED_CONTRASTS_STEM",
    "contrast_pairs",
    "analysis",
    "on_one_variant",
    "registered",
    "claim_of_figure",
]

#: stem of the injection-layer curve in a run folder (written by ``workbench.sweep injection-layer``, any number of
#: modes and seeds, ``workbench.layer_curve``, ``workbench.seed_stats`` and the demo); its paired layer contrasts are
#: ``{LAYER_CURVE_STEM}_contrasts`` (``workbench.claims.layer_curve.CONTRASTS_STEM``)
LAYER_CURVE_STEM = "injection_layer_curve"
#: per-variant scores (``variant, metric, task, attribute, value, ci_low, ci_high, n``; workbench.claims.compare)
COMPARE_STEM = "compare"
#: the paired differences of every claim's contrasts, one run per variant (``variant, baseline, metric, ..., diff,
#: ci_low, ci_high``); ``seed_contrasts`` (workbench.claims.seeds) holds them over training seeds
CONTRASTS_STEM = "contrasts"
SEED_CONTRASTS_STEM = "seed_contrasts"


#: ``Ablate.encoder`` value: one condition per encoder of the model
EACH = "each"


@dataclass(frozen=True)
class Ablate:
    """One condition (or one per encoder) of an ablation analysis (:func:`workbench.analysis.ablation.ablate`):
    ``mode`` (``block``: text queries cannot read the audio keys; ``ffn``: the FFN is skipped at the audio
    positions) on layers ``start`` .. ``stop - 1`` (``stop`` None: to the model's last layer), for ``encoder``'s
    audio (None: every encoder's; :data:`EACH`: one condition per encoder of the model). ``label`` names the
    condition in the table and the figure, formatted with ``first``, ``last`` (layers) and ``encoder``."""

    label: str
    mode: str
    start: int = 0
    stop: int | None = None
    encoder: str | None = None

    def resolve(self, n_layers: int, encoders) -> list[tuple[str, list[int], str, str | None]]:
        """``[(label, layers, mode, encoder)]`` for a model with ``n_layers`` layers and these encoder names."""
        layers = list(range(self.start, n_layers if self.stop is None else self.stop))
        if not layers:
            raise ValueError(
                f"ablation {self.label!r}: layers {self.start}..{self.stop} are empty for a model with "
                f"{n_layers} layers; fix its entry in workbench.claims.registry"
            )
        names = list(encoders) if self.encoder == EACH else [self.encoder]
        return [(self.label.format(first=layers[0], last=layers[-1], encoder=e), layers, self.mode, e) for e in names]


@dataclass(frozen=True)
class Analysis:
    """One inside-the-model analysis: its output ``stem``, the ``variant`` it runs on (None: several), a heading in
    words, what it does (one line, used in the verdict's "inside" sentence) and its ``kind``: how the verdict and the
    report read its table (``ablation``, ``probe``, ``attention``, ``logit_lens``, ``layer_curve``, ``compare``,
    ``contrasts``; ``figure``: shown only). An ablation lists its conditions (``ablations``) and the title of its
    figure (``plot_title``): the demo runs exactly these."""

    stem: str
    title: str
    variant: str | None = None
    what: str = ""
    kind: str = "figure"
    optional: bool = False
    ablations: tuple[Ablate, ...] = ()
    plot_title: str = ""

    def conditions(self, n_layers: int, encoders) -> list[tuple[str, list[int], str, str | None]]:
        """Every ablation condition of this analysis resolved for one model (:meth:`Ablate.resolve`)."""
        return [c for a in self.ablations for c in a.resolve(n_layers, encoders)]


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    statement: str
    contrasts: tuple[tuple[str, str], ...]
    scope: str
    analyses: tuple[Analysis, ...] = ()
    figures: tuple[str, ...] = field(default=())


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in (
        Claim(
            "claim1",
            "Claim 1, delayed integration",
            "audio entering later in the LLM costs little or helps",
            (("delayed", "baseline"),),  # PLITS@8 vs PLITS@0, same encoder
            "tiny preset, 300 steps; injection layers compared by the primary contrast: 0 vs 8, the injection-layer "
            "curve (when its runs exist) shows every fourth layer for PLITS and LAL",
            (
                Analysis(
                    LAYER_CURVE_STEM,
                    "Accuracy against the injection layer (PLITS and LAL)",
                    None,
                    "held-out accuracy per injection layer",
                    kind="layer_curve",
                    optional=True,
                ),
                Analysis(
                    "ablation_baseline_early_late",
                    "Baseline: audio blocked in the early vs the late layers",
                    "baseline",
                    "baseline (PLITS@0) with audio keys blocked for text queries",
                    kind="ablation",
                    ablations=(
                        Ablate("layers {first}-{last} blocked", "block", 0, 8),
                        Ablate("layers {first}-{last} blocked", "block", 8),
                    ),
                    plot_title="Baseline (PLITS@0): effect of blocking text queries from the audio keys in the early vs "
                    "the late layers",
                ),
                Analysis("attention_baseline", "Baseline: attention to audio per layer", "baseline", kind="attention"),
                Analysis("logit_lens_pal", "pal: logit lens with and without audio", "pal", kind="logit_lens"),
                Analysis(
                    "attribute_lens", "Attribute lens: the layer where each attribute is decided", None, optional=True
                ),
                # written by the stand-alone commands (workbench.attention, workbench.logit_lens) into their --out
                # folder, not by the demo
                Analysis(
                    "attention_to_audio", "Attention to audio per layer and head", None, kind="attention", optional=True
                ),
                Analysis("logit_lens", "Logit lens with and without audio", None, kind="logit_lens", optional=True),
            ),
            (
                LAYER_CURVE_STEM,
                f"{LAYER_CURVE_STEM}_contrasts",
                "ablation_baseline_early_late",
                "attention_baseline",
                "logit_lens_pal",
                "attribute_lens*",
            ),
        ),
        Claim(
            "claim2",
            "Claim 2, attention-only reading (LAL)",
            "attention-only integration (LAL) matches or beats putting audio in the input (PLITS)",
            (("lal", "delayed"),),  # LAL@8 vs PLITS@8, same encoder and layer
            "LAL and PLITS both enter at layer 8 with the same encoder and connector (LAL adds per-layer adapters and "
            "gates); the FFN ablation tests whether a PLITS-trained model needs the FFN on audio",
            (
                Analysis(
                    "ablation_delayed_ffn",
                    "Delayed PLITS model: FFN skipped at the audio positions",
                    "delayed",
                    "delayed (PLITS@8) model",
                    kind="ablation",
                    ablations=(Ablate("FFN skipped at audio, layers {first}-{last}", "ffn", 8),),
                    plot_title="Delayed (PLITS@8): effect of skipping the FFN at the audio positions (claim 2 on a "
                    "PLITS-trained model)",
                ),
                Analysis("listening_heads", "Listening heads: which heads read the audio", None, optional=True),
                Analysis("listening_ablation", "Listening heads ablated vs random heads", None, optional=True),
            ),
            ("ablation_delayed_ffn", "listening_heads*", "listening_ablation*"),
        ),
        Claim(
            "claim3",
            "Claim 3, encoder ensemble",
            "an ensemble of encoders beats a single encoder; each encoder carries different information",
            (("pal", "lal"), ("ensemble", "baseline")),  # 3 encoders vs Whisper alone, under LAL@8 and PLITS@0
            "encoders: Whisper-base, YAMNet and log-mel (the paper's SSLAM/CLAP have no offline weights); the ensemble "
            "also has more audio tokens than one encoder",
            (
                Analysis(
                    "ablation_pal_encoders",
                    "pal: one encoder blocked at a time",
                    "pal",
                    "pal (LAL ensemble) with one encoder's keys blocked",
                    kind="ablation",
                    ablations=(Ablate("without {encoder}", "block", 0, None, EACH),),
                    plot_title="pal (LAL ensemble): effect of blocking one encoder's audio keys at every layer",
                ),
                Analysis("probe_*", "Linear probes on each encoder, connector and layer", "pal", kind="probe"),
                Analysis("attention_pal", "pal: attention to each encoder's audio", "pal", kind="attention"),
                Analysis(
                    "patching_pal",
                    "pal: patching clean audio keys and values into corrupted runs",
                    "pal",
                    kind="patching",
                ),
                Analysis("atp", "Attribution patching (AtP) of every head and audio site", None, optional=True),
            ),
            ("ablation_pal_encoders", "probe_*", "attention_pal*", "patching_pal", "atp*"),
        ),
    )
}

#: analyses shown in the report's last section, under no claim
EXTRA: tuple[Analysis, ...] = (
    Analysis(COMPARE_STEM, "Accuracy and caption scores per variant", None, kind="compare"),
    Analysis("ablation_sweep_pal", "pal: audio blocked from each layer to the last", "pal", kind="ablation_sweep"),
    Analysis("steering", "Audio-minus-silence steering", None, optional=True),
)


def contrast_pairs() -> list[tuple[str, str, str]]:
    """``[(claim id, variant, reference)]`` over every claim, in registry order."""
    return [(c.id, a, b) for c in CLAIMS.values() for a, b in c.contrasts]


def analysis(stem: str) -> Analysis:
    """The registered analysis with this output stem (KeyError naming the known ones)."""
    for a in [a for c in CLAIMS.values() for a in c.analyses] + list(EXTRA):
        if a.stem == stem:
            return a
    raise KeyError(
        f"no analysis with output stem {stem!r} in workbench.claims.registry; known: "
        f"{sorted(a.stem for c in CLAIMS.values() for a in c.analyses)}"
    )


def on_one_variant(kind: str) -> list[Analysis]:
    """The registered analyses of ``kind`` that run on one variant (the ones the demo runs), in registry order."""
    return [
        a
        for a in [a for c in CLAIMS.values() for a in c.analyses] + list(EXTRA)
        if a.kind == kind and a.variant is not None
    ]


def registered(variant: str, kind: str) -> tuple[Claim, Analysis]:
    """The claim and the one analysis of ``kind`` that runs on ``variant`` (how the demo names its outputs)."""
    found = [(c, a) for c in CLAIMS.values() for a in c.analyses if a.variant == variant and a.kind == kind]
    if len(found) != 1:
        raise KeyError(
            f"workbench.claims.registry registers {len(found)} {kind!r} analyses on {variant!r}; expected one"
        )
    return found[0]


def claim_of_figure(stem: str) -> str | None:
    """The id of the first claim whose ``figures`` patterns match ``stem`` (None: no claim)."""
    from fnmatch import fnmatch

    for c in CLAIMS.values():
        if any(fnmatch(stem, p) for p in c.figures):
            return c.id
    return None
