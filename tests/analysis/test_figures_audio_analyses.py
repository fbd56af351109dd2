"""The figure conventions (axis units, colour-bar titles, caption) for the attribute lens, listening heads,
steering and attribution-patching builders, on frames from the real functions on the tiny random models."""

import inspect

import torch

from tests.analysis.fakes import fake_batch_pair
from tests.analysis.planted import OPTION_IDS, OPTIONS, fake_dataset
from tests.analysis.test_figures import check_figure
from tests.analysis.tiny_pal import model
from workbench.analysis import atp as ATP
from workbench.analysis import attribute_lens as AL
from workbench.analysis import listening as LI
from workbench.analysis import steering as ST
from workbench.analysis.patching import patch_batch


def test_every_new_figure_has_units_and_a_caption():
    m, ds = model("baseline"), fake_dataset()
    lens = AL.attribute_lens(m, ds, OPTIONS, silence="zeros", option_ids=OPTION_IDS)
    scores = LI.listening_scores(m, ds, silence="zeros")
    abl = LI.listening_ablation(m, ds, scores, 2, draws=2, answer_options=OPTIONS, option_ids=OPTION_IDS, resamples=100)
    steer = ST.steer(
        m, ds, fake_dataset(seed=1), OPTIONS, alphas=[1], silence="zeros", option_ids=OPTION_IDS, resamples=100
    )
    clean, corr = fake_batch_pair({"mel": 12})
    ids = (torch.tensor([5, 6]), torch.tensor([7, 8]))
    summary = ATP.summarize_atp(
        ATP.atp_batch(m, clean, corr, *ids, "resid_audio,head_out"),
        patch_batch(m, clean, corr, *ids, "resid_audio,head_out"),
    )
    figs = {
        "attribute_lens.attribute_lens_figure": AL.attribute_lens_figure({"a": lens, "b": lens}),
        "listening.listening_figure": LI.listening_figure(scores),
        "listening.listening_ablation_figure": LI.listening_ablation_figure(abl),
        "steering.steering_figure": ST.steering_figure(steer),
        "atp.atp_figure": ATP.atp_figure(summary),
    }
    for name, fig in figs.items():
        check_figure(name, fig)
    builders = {
        f"{mod.__name__.rsplit('.', 1)[1]}.{n}"
        for mod in (AL, LI, ST, ATP)
        for n, f in inspect.getmembers(mod, inspect.isfunction)
        if f.__module__ == mod.__name__ and (n.startswith("fig_") or n.endswith("_figure"))
    }
    assert builders <= set(figs), f"figure builders without a check: {sorted(builders - set(figs))}"
