"""The main job (``./run demo``): load the default LLM offline into the hooked decoder, answer a prompt,
and show which attention heads read the user's question most.

Later stages of the project extend this into the full PAL demo (train/evaluate/analyse/report).
"""

from __future__ import annotations

import argparse
import time

import torch

from workbench.model.generate import greedy_generate
from workbench.model.llm import DEFAULT_LLM, load_llm


def question_span(tokenizer, messages) -> tuple[int, int]:
    """[start, end) token indices of the last user message's text inside the chat-templated prompt."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    content = messages[-1]["content"]
    lo = text.rindex(content)
    hi = lo + len(content)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if a < hi and b > lo]
    return inside[0], inside[-1] + 1


def top_heads_on_span(cache, n_layers: int, span: tuple[int, int], k: int = 5) -> list[tuple[int, int, float]]:
    """(layer, head, mass) of the k heads whose last-position query puts most attention on ``span``.

    Reads ``blocks.{l}.attn.hook_pattern`` [B, H, Lq, Lk] from a TransformerLens-style cache.
    """
    scored = []
    for layer in range(n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0, :, -1]  # [H, Lk]
        mass = pattern[:, span[0] : span[1]].sum(-1)
        scored += [(layer, head, float(m)) for head, m in enumerate(mass)]
    return sorted(scored, key=lambda t: -t[2])[:k]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="In one sentence: why does thunder follow lightning?")
    parser.add_argument("--llm", default=DEFAULT_LLM, help="alias, local checkpoint folder or hub id")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args(argv)

    t0 = time.time()
    print(f"[1/3] loading {args.llm} into HookedDecoder (first run converts the packaged GGUF once) ...", flush=True)
    model, tok = load_llm(args.llm)
    print(f"      {model.cfg.n_layers} layers, d_model {model.cfg.d_model}, {model.cfg.n_heads} heads "
          f"({model.cfg.n_kv_heads} KV heads), {len(model.hook_dict)} hook points; {time.time() - t0:.1f} s")

    messages = [{"role": "user", "content": args.prompt}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    print(f"[2/3] greedy answer (KV cache) to: {args.prompt!r}", flush=True)
    out = greedy_generate(model, ids, max_new_tokens=args.max_new_tokens, eos_token_id=tok.eos_token_id)
    answer = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    print(f"      answer: {answer}")

    print("[3/3] run_with_cache: heads whose last prompt token reads the question most", flush=True)
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    span = question_span(tok, messages)
    for layer, head, mass in top_heads_on_span(cache, model.cfg.n_layers, span):
        print(f"      L{layer:02d}H{head}: {mass:.2f} of its attention on question tokens {span[0]}..{span[1] - 1}")
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
