"""Closed-answer matching, chance levels, caption metrics (pycocoevalcap) against hand-checked values."""

from __future__ import annotations

import math
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from workbench.evaluation.metrics import (
    caption_item_scores,
    caption_scores,
    chance_level,
    first_option,
    is_correct,
    normalize_answer,
    score_answers,
)

COUNT = ["1", "2", "3", "4", "5", "6"]
PITCH = ["low", "medium", "high", "very high"]
LOUD = ["quiet", "medium", "loud"]


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("The Three!", "3"),
        ("very-high.", "very high"),
        ("  A   loud   sound ", "loud sound"),
        ("twice", "2"),
        ("Zero", "0"),
        ("an Organ", "organ"),
        ("", ""),
        ("FM", "fm"),
        ("it's", "it s"),
    ],
)
def test_normalize(raw, norm):
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize(
    "pred,answer,options,ok",
    [
        ("3", "three", None, True),  # number word <-> digit, both ways
        ("three", "3", COUNT, True),
        ("Three beeps.", "3", COUNT, True),  # first option word
        ("There are 3 beeps", "3", COUNT, True),
        ("It is very high.", "very high", PITCH, True),  # longest option wins over "high"
        ("It is very high.", "high", PITCH, False),
        ("high", "very high", PITCH, False),
        ("quiet, medium or loud", "loud", LOUD, False),  # listing all options: only the first counts
        ("quiet, medium or loud", "quiet", LOUD, True),
        ("The sound is LOUD", "loud", LOUD, True),
        ("", "loud", LOUD, False),
        ("I cannot tell", "loud", LOUD, False),
        ("dog barking", "dog", None, True),  # no options: answer is a token prefix
        ("a dog", "dog", None, True),
        ("hotdog", "dog", None, False),
        ("the dog", "cat", None, False),
        ("No, there is no music.", "no", ["yes", "no"], True),
        ("Yes.", "no", ["yes", "no"], False),
    ],
)
def test_is_correct(pred, answer, options, ok):
    assert is_correct(pred, answer, options) is ok


def test_first_option_and_chance():
    assert first_option("a loud then quiet sound", LOUD) == "loud"
    assert first_option("nothing here", LOUD) is None
    assert chance_level("count", {"count": COUNT}) == pytest.approx(1 / 6)
    assert math.isnan(chance_level("unknown", {"count": COUNT}))
    with pytest.raises(ValueError):
        is_correct("x", "")


def test_score_answers_accuracy_and_chance():
    opts = {"loudness_class": LOUD, "count": COUNT}
    df = pd.DataFrame(
        {
            "row_id": list("abcdef"),
            "file_name": ["f1", "f1", "f2", "f2", "f3", "f3"],
            "task": ["cls", "cls", "qa", "qa", "cls", "qa"],
            "attribute": ["loudness_class", "count", "count", "loudness_class", "loudness_class", "count"],
            "question": "q",
            "answer": ["loud", "3", "2", "quiet", "medium", "6"],
            "prediction": ["It is loud", "three", "3", "Quiet.", "loud", "six times"],
            "closed": True,
        }
    )
    s = score_answers(df, opts, meteor=False).set_index(["metric", "task", "attribute"])
    # correct: a, b, d, f (4 of 6)
    assert s.loc[("accuracy", "all", "all"), "value"] == pytest.approx(4 / 6)
    assert s.loc[("accuracy", "all", "all"), "chance"] == pytest.approx((3 / 3 + 3 / 6) / 6)  # row mean
    assert s.loc[("accuracy", "cls", "loudness_class"), "value"] == pytest.approx(1 / 2)
    assert s.loc[("accuracy", "cls", "loudness_class"), "n"] == 2
    assert s.loc[("accuracy", "qa", "count"), "value"] == pytest.approx(1 / 2)
    assert s.loc[("accuracy", "all", "count"), "value"] == pytest.approx(2 / 3)
    assert s.loc[("accuracy", "all", "count"), "chance"] == pytest.approx(1 / 6)
    # macro over attributes: count 2/3, loudness 2/3; macro chance = (1/6 + 1/3) / 2
    assert s.loc[("macro_accuracy", "all", "all"), "value"] == pytest.approx(2 / 3)
    assert s.loc[("macro_accuracy", "all", "all"), "chance"] == pytest.approx(0.25)


# --------------------------------------------------------------------------------------- captions
def test_bleu_rouge_hand_checked():
    # cand "the cat sat on the mat" vs ref "the cat sat on a mat": n-gram precisions 5/6, 3/5, 2/4, 1/3,
    # equal lengths (BP = 1) -> BLEU-4 = (5/6 * 3/5 * 1/2 * 1/3) ** 0.25; LCS = 5 -> ROUGE-L F = 5/6
    corpus, items = caption_item_scores(
        {"x": ["the cat sat on a mat"]}, {"x": "the cat sat on the mat"}, meteor=False, tokenized=True
    )
    assert corpus["bleu_1"] == pytest.approx(5 / 6, abs=1e-6)
    assert corpus["bleu_4"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25, abs=1e-6)
    assert corpus["bleu_4"] == pytest.approx(0.53728, abs=1e-4)
    assert corpus["rouge_l"] == pytest.approx(5 / 6, abs=1e-9)
    assert items.loc["x", "rouge_l"] == pytest.approx(5 / 6, abs=1e-9)


def _ngrams(words, n):
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _cider_d_reference(refs, preds, sigma=6.0):
    """Independent CIDEr-D (Vedantam et al. 2015, coco-caption variant): tf-idf n-gram vectors, clipped
    hypothesis counts, Gaussian length penalty, mean over n = 1..4 and over references, x 10."""
    keys = sorted(refs)
    N = len(keys)
    df = Counter()
    for k in keys:
        df.update({g for r in refs[k] for n in range(1, 5) for g in _ngrams(r.split(), n)})

    def vec(words, n):
        c = _ngrams(words, n)
        v = {g: tf * (math.log(N) - math.log(max(1.0, df[g]))) for g, tf in c.items()}
        return v, math.sqrt(sum(x * x for x in v.values()))

    out = []
    for k in keys:
        h = preds[k].split()
        score = 0.0
        for n in range(1, 5):
            vh, nh = vec(h, n)
            acc = 0.0
            for r in refs[k]:
                rw = r.split()
                vr, nr = vec(rw, n)
                val = sum(min(vh[g], vr.get(g, 0.0)) * vr.get(g, 0.0) for g in vh)
                if nh and nr:
                    val /= nh * nr
                val *= math.exp(-((len(h) - len(rw)) ** 2) / (2 * sigma**2))
                acc += val
            score += acc / len(refs[k])
        out.append(score / 4 * 10)
    return float(np.mean(out)), out


def test_cider_d_matches_independent_implementation():
    refs = {
        "a": ["a man says three", "someone says three in a male voice"],
        "b": ["a loud burst of white noise", "white noise sounds once loudly"],
        "c": ["three clicks at five per second", "a short train of three clicks"],
    }
    preds = {"a": "a man says two", "b": "a burst of pink noise", "c": "three clicks"}
    corpus, items = caption_item_scores(refs, preds, meteor=False, tokenized=True)
    ref_mean, ref_items = _cider_d_reference(refs, preds)
    assert corpus["cider_d"] == pytest.approx(ref_mean, rel=1e-9)
    np.testing.assert_allclose(items["cider_d"].to_numpy(), ref_items, rtol=1e-9)
    assert 0 < corpus["cider_d"] < 10
    # identical candidates (>= 4 words) on clips with disjoint vocabularies: every cosine is 1 -> CIDEr-D = 10;
    # 3-word captions have no 4-grams, so the n = 4 term is 0 -> 7.5
    same = caption_scores(
        {"a": ["dogs bark very loudly"], "b": ["heavy rain falls softly"]},
        {"a": "dogs bark very loudly", "b": "heavy rain falls softly"},
        meteor=False,
    )
    assert same["cider_d"] == pytest.approx(10.0, rel=1e-9)
    short = caption_scores(
        {"a": ["dogs bark loudly"], "b": ["rain falls softly"]},
        {"a": "dogs bark loudly", "b": "rain falls softly"},
        meteor=False,
    )
    assert short["cider_d"] == pytest.approx(7.5, rel=1e-9)
    assert same["bleu_4"] == pytest.approx(1.0, abs=1e-6)


REFS = {"a": ["The cat sat on a mat."], "b": ['A man says "three".']}
GOOD = {"a": "The cat sat on the mat!", "b": 'A man says "three".'}
BAD = {"a": "Rain falls on a roof.", "b": "Music plays loudly."}


@pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer needs java")
def test_ptb_tokenizer():
    g = caption_scores(REFS, GOOD, meteor=False)
    b = caption_scores(REFS, BAD, meteor=False)
    # PTB tokenisation lower-cases and strips punctuation, so "b" is an exact match
    assert g["rouge_l"] == pytest.approx((5 / 6 + 1.0) / 2, abs=1e-9)
    assert g["cider_d"] > b["cider_d"] and g["bleu_4"] > b["bleu_4"]
    assert "meteor" not in g


@pytest.mark.slow  # ~12 s: the METEOR jar loads its paraphrase table
@pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer needs java")
def test_ptb_tokenizer_is_quiet_but_passes_other_errors_on(capfd):
    import os

    from workbench.evaluation import metrics

    metrics.tokenize_captions({"a": ["A dog barks."]})
    assert "PTBTokenizer tokenized" not in capfd.readouterr().err  # java's per-call notice on file descriptor 2
    with metrics._quiet_java_stderr():  # what the java process writes: straight to file descriptor 2
        os.write(2, b"PTBTokenizer tokenized 4 tokens at 96.07 tokens per second.\njava: something went wrong\n")
    err = capfd.readouterr().err
    assert "something went wrong" in err and "tokens per second" not in err


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")
def test_meteor_offline():
    g = caption_scores(REFS, GOOD, meteor=True)
    b = caption_scores(REFS, BAD, meteor=True)
    assert 0.3 < g["meteor"] <= 1.0 and 0 <= b["meteor"] < g["meteor"]


def test_rows_without_attribute_are_kept():
    df = pd.DataFrame(
        {
            "row_id": ["a", "b"],
            "file_name": ["f", "g"],
            "task": ["cls", "cls"],
            "attribute": [None, "category"],
            "question": "q",
            "answer": ["dog", "tone"],
            "prediction": ["dog barking", "noise"],
            "closed": True,
        }
    )
    s = score_answers(df, {"category": ["tone", "noise"]}, meteor=False).set_index(["metric", "task", "attribute"])
    assert s.loc[("accuracy", "all", "all"), "n"] == 2 and s.loc[("accuracy", "all", "all"), "value"] == 0.5
    assert s.loc[("accuracy", "cls", "cls"), "value"] == 1.0  # attribute falls back to the task name
