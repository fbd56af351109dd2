"""Dataset + collate: label mask, audio slot, shapes, prompt-only mode, token mode."""

from __future__ import annotations

import torch

from workbench.data.dataset import DEFAULT_SYSTEM_PROMPT, AudioTaskDataset, build_prompt, collate, encode_example


def _sys_ids(tok, system=DEFAULT_SYSTEM_PROMPT):
    s = tok.apply_chat_template([{"role": "system", "content": system}], tokenize=False)
    return tok(s, add_special_tokens=False)["input_ids"]


def test_label_mask_is_exactly_the_answer(tokenizer):
    enc = encode_example(tokenizer, "Which instrument is playing?", "violin")
    ids, labels = enc["input_ids"], enc["labels"]
    lab = [t for t in labels if t != -100]
    ans = tokenizer("violin", add_special_tokens=False)["input_ids"]
    assert lab == ans + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    first = next(i for i, t in enumerate(labels) if t != -100)
    assert first == enc["prompt_len"] and all(t != -100 for t in labels[first:])
    assert ids[first:] == lab and ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompt, slot = build_prompt(tokenizer, "Which instrument is playing?")
    assert ids[: len(prompt)] == prompt and slot == enc["audio_slot"]


def test_audio_slot_right_after_system_prompt(tokenizer):
    enc = encode_example(tokenizer, "How many clicks?", "3", system_prompt="Listen.")
    sys_ids = _sys_ids(tokenizer, "Listen.")
    assert enc["audio_slot"] == len(sys_ids)
    assert enc["input_ids"][: enc["audio_slot"]] == sys_ids
    user = tokenizer.decode(enc["input_ids"][enc["audio_slot"] :])
    assert user.startswith("<|im_start|>user")
    assert encode_example(tokenizer, "q", "a", slot="prefix")["audio_slot"] == 0


def test_batch_shapes_and_masks(small_ds, tokenizer):
    ds = AudioTaskDataset(small_ds, tokenizer, sample_rate=8000)
    assert len(ds) > 24 * 4
    items = [ds[i] for i in (0, 3, 5, 11)]
    b = ds.collate_fn(items)
    B, L = b["input_ids"].shape
    assert (B, L) == (4, max(len(it["input_ids"]) for it in items))
    assert b["attention_mask"].shape == b["labels"].shape == (B, L)
    for k, it in enumerate(items):
        n = len(it["input_ids"])
        assert b["attention_mask"][k].sum() == n and b["attention_mask"][k, :n].all()
        assert (b["labels"][k, n:] == -100).all() and (b["input_ids"][k, n:] == ds.pad_id).all()
        got = tokenizer.decode(b["input_ids"][k][b["labels"][k] != -100])
        assert got == it["row"]["answer"] + "<|im_end|>"
        assert b["input_ids"][k, : b["audio_slot"][k]].tolist() == _sys_ids(tokenizer)
    assert b["waves"].shape[0] == 4 and b["wave_lengths"].max() == b["waves"].shape[1]
    for k, it in enumerate(items):  # resampled to 8 kHz
        assert abs(b["wave_lengths"][k].item() - it["row"]["duration_s"] * 8000) <= 1
    assert [r["file_name"] for r in b["row"]] == [it["row"]["file_name"] for it in items]
    assert "category" in b["row"][0] and "question" in b["row"][0]


def test_task_filter_and_prompt_mode(small_ds, tokenizer):
    ds = AudioTaskDataset(small_ds, tokenizer, tasks=["cls"], with_answer=False, check_audio=False)
    assert {r["task"] for r in ds.rows} == {"cls"}
    items = [ds[0], ds[1], ds[2]]
    b = ds.prompt_collate_fn()(items)
    assert (b["labels"] == -100).all()
    for k, it in enumerate(items):  # left padding: prompt ends at the last column, slot shifted
        n = len(it["input_ids"])
        L = b["input_ids"].shape[1]
        assert b["input_ids"][k, L - n :].tolist() == it["input_ids"].tolist()
        assert b["audio_slot"][k] == it["audio_slot"] + (L - n)
        assert b["input_ids"][k, b["audio_slot"][k] :].tolist()[:1] == [tokenizer.convert_tokens_to_ids("<|im_start|>")]


def test_token_mode(small_ds, tokenizer):
    class FakeCache:
        def load(self, path, name):
            n = 3 + len(str(path)) % 5
            return torch.full((n, 4 if name == "mel" else 6), float(n))

    ds = AudioTaskDataset(small_ds, tokenizer, check_audio=False, encoders=["mel", "whisper"], cache_dir="/nonexistent")
    ds.cache = FakeCache()
    items = [ds[i] for i in range(5)]
    b = collate(items, pad_id=ds.pad_id)
    assert "waves" not in b
    for name, d in (("mel", 4), ("whisper", 6)):
        t, m = b["audio_tokens"][name], b["audio_token_mask"][name]
        T = max(it["audio_tokens"][name].shape[0] for it in items)
        assert t.shape == (5, T, d) and m.shape == (5, T) and m.dtype == torch.bool
        for k, it in enumerate(items):
            n = it["audio_tokens"][name].shape[0]
            assert m[k].sum() == n and (t[k, n:] == 0).all() and (t[k, :n] == n).all()
