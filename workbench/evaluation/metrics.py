"""Evaluation metrics: closed-answer accuracy (with chance levels) and captioning metrics.

Closed-ended answers (``closed`` task rows)
-------------------------------------------
:func:`normalize_answer` maps a string to a canonical token sequence:

1. Unicode NFKC, lower-case;
2. every character that is not a letter, digit, underscore or whitespace becomes a space
   (``"very-high."`` -> ``"very high"``, ``"it's"`` -> ``"it s"``);
3. the articles ``a``, ``an``, ``the`` are dropped;
4. number words become digits: ``zero..twenty`` (``"three"`` -> ``"3"``) and ``once/twice/thrice``
   (-> ``1/2/3``), so a counting answer ``"3"`` matches ``"three"`` / ``"three times"``;
5. whitespace is collapsed.

:func:`is_correct` then accepts a prediction for a closed row if

* **exact**: ``normalize(prediction) == normalize(answer)``; or
* **first option**: the row's attribute has an option list (``answer_options.json``); scanning the
  normalised prediction from the left, the *first* token span that equals a normalised option (at each
  position the longest option wins, so ``"very high"`` beats ``"high"``) equals the normalised answer.
  ``"It is loud."`` -> ``loud``; ``"Three beeps"`` -> ``3``. Only the first option mentioned counts, so
  listing every option (``"quiet, medium or loud"``) is right only when the first one listed is, and
  cannot beat chance; a negation before the option (``"not quiet"``) is read as that option (a rare,
  conservative error for an LLM answer, and the same for every variant);
* **no option list** (e.g. imported datasets without ``answer_options.json`` entries): the answer's
  normalised tokens must be a prefix of the prediction's (``"dog"`` accepts ``"dog barking"``).

Chance level of a closed row = ``1 / len(answer_options[attribute])`` (NaN if unknown). For a group of
rows :func:`score_answers` reports ``accuracy`` (micro, over rows) with ``chance`` = the mean of the
rows' chances (the expected accuracy of a uniform guesser on exactly those rows), and
``macro_accuracy`` (mean of the per-attribute accuracies) with the macro chance (mean of the
per-attribute chances).

Captioning / open answers
-------------------------
The metrics come from the maintained ``pycocoevalcap`` package (the MS-COCO caption evaluation code,
the same code used by audio captioning papers; pinned in requirements.txt):

* text is tokenised with its ``PTBTokenizer`` (Stanford CoreNLP 3.4.1 jar shipped in the wheel, needs
  ``java``; without java a regex fallback ``[a-z0-9]+`` on lower-cased text is used, with a warning);
* ``bleu_1`` .. ``bleu_4`` (corpus BLEU, closest reference length), ``rouge_l`` (ROUGE-L F, beta 1.2),
  ``cider_d`` (pycocoevalcap's ``Cider`` is CIDEr-D: clipped n-gram counts, Gaussian length penalty
  sigma 6, x10; document frequencies from the references of the evaluated set), and ``meteor``
  (METEOR 1.5; ``meteor-1.5.jar`` and its English paraphrase table ship in the wheel, run with java
  offline; ~10 s JVM start-up, pass ``meteor=False`` to skip);
* **SPICE and SPIDEr are not computed**: pycocoevalcap's SPICE downloads Stanford CoreNLP 3.6.0 and its
  models (~400 MB) from nlp.stanford.edu on first use, which is impossible offline here, and no package
  on PyPI/Debian ships them. SPIDEr = (CIDEr-D + SPICE) / 2 therefore cannot be reported either; we do
  not substitute anything for it.

Items: caption-style metrics are computed per clip: within a (task, attribute) group all rows of the
same ``file_name`` give that clip's references (AudioCaps/Clotho: several captions per clip) and the
prediction of its first row is the candidate.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import unicodedata
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.evaluation.answers import closed_rows

__all__ = [
    "normalize_answer",
    "first_option",
    "is_correct",
    "chance_level",
    "tokenize_captions",
    "caption_scores",
    "caption_items",
    "caption_item_scores",
    "score_answers",
    "CAPTION_METRICS",
    "ANSWER_COLUMNS",
    "SCORE_COLUMNS",
]

_NUMBERS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBERS.update({"once": "1", "twice": "2", "thrice": "3"})
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)

CAPTION_METRICS = ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d", "meteor"]
ANSWER_COLUMNS = ["row_id", "file_name", "task", "attribute", "question", "answer", "prediction", "correct", "closed"]
SCORE_COLUMNS = ["metric", "task", "attribute", "value", "n", "chance"]


def _tokens(s) -> list[str]:
    if s is None or (isinstance(s, float) and np.isnan(s)):
        return []
    s = unicodedata.normalize("NFKC", str(s)).lower()
    s = _PUNCT.sub(" ", s).replace("_", " ")
    return [_NUMBERS.get(t, t) for t in s.split() if t not in _ARTICLES]


def normalize_answer(s) -> str:
    """Canonical form of an answer (see the module docstring): ``"The Three!"`` -> ``"3"``."""
    return " ".join(_tokens(s))


def first_option(prediction, options: Sequence[str]) -> str | None:
    """The normalised option that occurs first in the normalised prediction (longest at a tie), or None."""
    toks = _tokens(prediction)
    opts = sorted({tuple(_tokens(o)) for o in options if _tokens(o)}, key=len, reverse=True)
    for i in range(len(toks)):
        for o in opts:
            if tuple(toks[i : i + len(o)]) == o:
                return " ".join(o)
    return None


def is_correct(prediction, answer, options: Sequence[str] | None = None) -> bool:
    """Whether a prediction answers a closed row correctly (rules: module docstring)."""
    p, a = _tokens(prediction), _tokens(answer)
    if not a:
        raise ValueError(f"empty reference answer {answer!r}")
    if p == a:
        return True
    if options:
        return first_option(prediction, options) == " ".join(a)
    return p[: len(a)] == a


def chance_level(attribute, answer_options: Mapping[str, Sequence[str]] | None) -> float:
    """``1 / len(answer_options[attribute])``; NaN if the attribute has no option list."""
    opts = (answer_options or {}).get(attribute)
    return 1.0 / len(opts) if opts else float("nan")


# ----------------------------------------------------------------------------------------- captions
_PTB_CHATTER = re.compile(r"^PTBTokenizer tokenized \d+ tokens at .* tokens per second\.$")


@contextlib.contextmanager
def _quiet_java_stderr():
    """Send file descriptor 2 (where the PTB tokenizer's java process writes "PTBTokenizer tokenized N tokens at
    ...", once per call) to a temporary file for the duration, then pass on every line that is not that notice."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = [ln for ln in tmp.read().decode(errors="replace").splitlines() if ln and not _PTB_CHATTER.match(ln)]
            if rest:
                print("\n".join(rest), file=sys.stderr)


def tokenize_captions(texts: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``{id: [text, ...]}`` -> same, PTB-tokenised, lower-cased, punctuation removed (coco-caption)."""
    if shutil.which("java"):
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        flat = {k: [{"caption": str(t)} for t in v] for k, v in texts.items()}
        with _quiet_java_stderr():
            out = PTBTokenizer().tokenize(flat)
        return {k: out.get(k, [""] * len(v)) for k, v in texts.items()}
    warnings.warn(
        "java not found: captions are tokenised with a regex instead of the PTB tokenizer; "
        "METEOR is unavailable. Install a JRE (e.g. apt-get install default-jre-headless).",
        stacklevel=2,
    )
    return {k: [" ".join(re.findall(r"[a-z0-9]+", str(t).lower())) for t in v] for k, v in texts.items()}


def caption_item_scores(
    refs: Mapping[str, Sequence[str]], preds: Mapping[str, str], meteor: bool = True, tokenized: bool = False
) -> tuple[dict[str, float], pd.DataFrame]:
    """Corpus and per-item caption metrics with pycocoevalcap.

    Args:
        refs: ``{item_id: [reference, ...]}``; preds: ``{item_id: prediction}`` (same keys).
        meteor: also run METEOR (java); tokenized: inputs are already tokenised (skip PTB).

    Returns:
        ``(corpus, items)``: ``corpus`` maps metric -> corpus score (BLEU is corpus-level; ROUGE-L,
        CIDEr-D and METEOR are item means / METEOR's aggregate); ``items`` is a DataFrame indexed by
        item id with one column per metric (BLEU columns are sentence-level BLEU).
    """
    if set(refs) != set(preds):
        raise ValueError("caption_item_scores: refs and preds must have the same item ids")
    if not refs:
        return {}, pd.DataFrame(columns=CAPTION_METRICS)
    keys = sorted(refs)
    if tokenized:
        gts = {k: [str(r) for r in refs[k]] for k in keys}
        res = {k: [str(preds[k])] for k in keys}
    else:
        both = tokenize_captions({**{f"r{k}": list(refs[k]) for k in keys}, **{f"p{k}": [preds[k]] for k in keys}})
        gts = {k: both[f"r{k}"] for k in keys}
        res = {k: both[f"p{k}"][:1] for k in keys}
    # pycocoevalcap's scorers choke on empty strings (BLEU divides, METEOR hangs on empty lines)
    res = {k: [v[0] if v and v[0].strip() else "<empty>"] for k, v in res.items()}
    gts = {k: [r if r.strip() else "<empty>" for r in v] or ["<empty>"] for k, v in gts.items()}
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    corpus: dict[str, float] = {}
    cols: dict[str, np.ndarray] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its length ratio
        b, bs = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        corpus[f"bleu_{n + 1}"], cols[f"bleu_{n + 1}"] = float(b[n]), np.asarray(bs[n], float)
    r, rs = Rouge().compute_score(gts, res)
    corpus["rouge_l"], cols["rouge_l"] = float(r), np.asarray(rs, float)
    c, cs = Cider().compute_score(gts, res)
    corpus["cider_d"], cols["cider_d"] = float(c), np.asarray(cs, float)
    if meteor:
        if shutil.which("java") is None:
            warnings.warn("METEOR skipped: java not found", stacklevel=2)
        else:
            from pycocoevalcap.meteor.meteor import Meteor

            m = Meteor()
            try:
                mv, ms = m.compute_score(gts, res)
            finally:
                m.__del__()  # close the JVM now (calling it again at GC is harmless)
            corpus["meteor"], cols["meteor"] = float(mv), np.asarray(ms, float)
    return corpus, pd.DataFrame(cols, index=pd.Index(keys, name="item"))


def caption_scores(
    refs: Mapping[str, Sequence[str]], preds: Mapping[str, str], meteor: bool = True
) -> dict[str, float]:
    """Corpus caption metrics ``{metric: value}`` (see :func:`caption_item_scores`)."""
    return caption_item_scores(refs, preds, meteor=meteor)[0]


def caption_items(answers: pd.DataFrame) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Group open rows into per-clip items: ``({file_name: [answers]}, {file_name: first prediction})``."""
    refs: dict[str, list[str]] = {}
    preds: dict[str, str] = {}
    for fn, ans, pred in zip(answers["file_name"], answers["answer"], answers["prediction"]):
        fn = str(fn)
        refs.setdefault(fn, []).append("" if pd.isna(ans) else str(ans))
        if fn not in preds:
            preds[fn] = "" if pd.isna(pred) else str(pred)
    return refs, preds


# ------------------------------------------------------------------------------------------ scoring
def mark_correct(answers: pd.DataFrame, answer_options: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Return a copy with ``correct`` (bool for closed rows, NA for open rows) and ``chance`` columns."""
    df = answers.copy()
    if df["attribute"].isna().any():  # rows without an attribute would vanish from every groupby
        df["attribute"] = df["attribute"].astype(object).where(df["attribute"].notna(), df["task"])
    closed = closed_rows(df)  # the one true/false rule of answers tables (workbench.evaluation.answers)
    df["closed"] = closed
    correct = [
        is_correct(p, a, (answer_options or {}).get(att)) if c else None
        for p, a, att, c in zip(df["prediction"], df["answer"], df["attribute"], closed)
    ]
    df["correct"] = pd.array(correct, dtype="boolean")
    df["chance"] = [chance_level(att, answer_options) if c else float("nan") for att, c in zip(df["attribute"], closed)]
    return df


def _accuracy_row(g: pd.DataFrame, task: str, attribute: str) -> dict:
    """``accuracy`` of the closed rows ``g``; chance the row mean."""
    return {
        "metric": "accuracy",
        "task": task,
        "attribute": attribute,
        "value": float(g["correct"].astype(float).mean()),
        "n": int(len(g)),
        "chance": float(g["chance"].mean()) if g["chance"].notna().any() else float("nan"),
    }


def _macro_row(g: pd.DataFrame, task: str) -> dict:
    """``macro_accuracy`` of the closed rows ``g``: the mean over attributes of their accuracy (and chance)."""
    per = g.groupby("attribute", sort=True).agg(
        acc=("correct", lambda s: s.astype(float).mean()), chance=("chance", "mean")
    )
    return {
        "metric": "macro_accuracy",
        "task": task,
        "attribute": "all",
        "value": float(per["acc"].mean()),
        "n": int(len(g)),
        "chance": float(per["chance"].mean()) if per["chance"].notna().any() else float("nan"),
    }


def _closed_score_rows(closed: pd.DataFrame) -> list[dict]:
    """Accuracy rows of the closed rows (see :func:`score_answers`)."""
    out: list[dict] = []
    if len(closed):
        out.append(_accuracy_row(closed, "all", "all"))
        out.append(_macro_row(closed, "all"))
        for task, g in closed.groupby("task", sort=True):
            out.append(_accuracy_row(g, task, "all"))
            out.append(_macro_row(g, task))
            for att, ga in g.groupby("attribute", sort=True):
                out.append(_accuracy_row(ga, task, att))
        if closed["task"].nunique() > 1:
            for att, ga in closed.groupby("attribute", sort=True):
                out.append(_accuracy_row(ga, "all", att))
    return out


def _open_score_rows(open_: pd.DataFrame, meteor: bool) -> list[dict]:
    """Exact-match and caption-metric rows of the open rows (see :func:`score_answers`); ``n`` = clips."""
    out: list[dict] = []
    for task, g in open_.groupby("task", sort=True):
        groups = [(att, ga) for att, ga in g.groupby("attribute", sort=True)]
        if len(groups) > 1:
            groups.append(("all", g))
        for att, ga in groups:
            refs, preds = caption_items(ga)
            em = np.mean([any(normalize_answer(preds[k]) == normalize_answer(r) for r in refs[k]) for k in refs])
            nan = float("nan")
            out.append(
                {
                    "metric": "exact_match",
                    "task": task,
                    "attribute": att,
                    "value": float(em),
                    "n": len(refs),
                    "chance": nan,
                }
            )
            corpus, _ = caption_item_scores(refs, preds, meteor=meteor)
            for m in CAPTION_METRICS:
                if m in corpus:
                    out.append(
                        {"metric": m, "task": task, "attribute": att, "value": corpus[m], "n": len(refs), "chance": nan}
                    )
    return out


def score_answers(
    answers: pd.DataFrame, answer_options: Mapping[str, Sequence[str]] | None = None, meteor: bool = True
) -> pd.DataFrame:
    """Tidy scores of an answers table: columns ``metric, task, attribute, value, n, chance``.

    ``answers`` needs ``file_name, task, attribute, answer, prediction`` and ``closed`` (or ``correct``);
    ``correct`` is (re)computed with :func:`is_correct`. Rows (``"all"`` = pooled):

    * closed rows: ``accuracy`` for (all, all), (task, all), (task, attribute), (all, attribute), and
      ``macro_accuracy`` for (all, all) and (task, all);
    * open rows: ``exact_match`` (normalised) and the caption metrics (:data:`CAPTION_METRICS`) for
      (task, attribute) and, when a task has several open attributes, (task, all); ``n`` = clips.
    """
    df = mark_correct(answers, answer_options)
    out = _closed_score_rows(df[df["closed"]]) + _open_score_rows(df[~df["closed"]], meteor)
    return pd.DataFrame(out, columns=SCORE_COLUMNS)
