"""core helpers used by the notebooks: sample_rows, prompt-only batches, write_outputs(png=False)."""

import pytest

from workbench.analysis.core import sample_rows


class Rows:
    def __init__(self, n):
        self.rows = [{"row_id": f"r{i}"} for i in range(n)]
        self.tokenizer = object()


def test_sample_rows_is_a_seeded_ordered_subset_copy():
    ds = Rows(50)
    a, b = sample_rows(ds, 10, seed=3), sample_rows(ds, 10, seed=3)
    ids = [r["row_id"] for r in a.rows]
    assert ids == [r["row_id"] for r in b.rows] and len(set(ids)) == 10
    assert ids == sorted(ids, key=lambda s: int(s[1:]))  # original order kept
    assert [r["row_id"] for r in sample_rows(ds, 10, seed=4).rows] != ids
    assert len(ds.rows) == 50 and a.tokenizer is ds.tokenizer  # the source is untouched, the rest shared
    full = sample_rows(ds, 80)
    assert full.rows == ds.rows and full.rows is not ds.rows
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_rows(ds, 0)


def test_prompt_only_batches_drop_the_answers():
    """batches(prompt_only=True) yields left-padded prompts without answer tokens (ready for generation)."""
    import torch

    from tests.analysis.fakes import FakeDataset
    from workbench.analysis.core import batches, prompt_item

    ds = FakeDataset(None, root=None, n=3)
    full = next(batches(ds, 3))
    prompt = next(batches(ds, 3, prompt_only=True))
    assert full["input_ids"].shape[1] == 11 and prompt["input_ids"].shape[1] == 8  # 8 prompt + 3 answer tokens
    assert torch.equal(prompt["input_ids"], full["input_ids"][:, :8])
    assert bool((prompt["labels"] == -100).all()) and bool(prompt["attention_mask"][:, -1].all())
    item = prompt_item(ds[0])
    assert item["input_ids"].tolist() == ds[0]["input_ids"][:8].tolist() and item["row"] is ds[0]["row"]


def test_write_outputs_png_false_skips_the_image_export(tmp_path, monkeypatch):
    import pandas as pd
    import plotly.graph_objects as go

    from workbench.analysis import core, outputs

    calls = []
    monkeypatch.setattr(outputs, "_png_bytes", lambda fig: calls.append(fig) or b"png")
    out = core.write_outputs(pd.DataFrame({"a": [1]}), go.Figure(), tmp_path, "x", png=False)
    assert sorted(out) == ["csv", "html"] and not calls and not (tmp_path / "x.png").exists()
    assert sorted(core.write_outputs(None, go.Figure(), tmp_path, "y")) == ["html", "png"] and len(calls) == 1
