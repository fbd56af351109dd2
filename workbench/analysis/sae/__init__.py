"""Sparse autoencoders on the audio path, scored against the corpus's exact attributes.

Modules (one job each): ``activations`` (collect a hook's rows by token role, resumable), ``row_store`` (the
rows on disk: shards + manifest),
``model`` (TopK / BatchTopK SAE), ``train`` (deterministic, resumable training), ``metrics`` (explained variance,
L0, dead / dense features, loss recovered through the hook), ``scores`` (ground-truth AUROC / F1, k-sparse probing
beside the dense probe, splitting / absorption), ``causal`` (ablate an attribute's features, steer with one),
``stability`` (matched features across SAE seeds), ``saelens_format`` (SAELens's ``cfg.json`` +
``sae_weights.safetensors``), ``pages`` (feature pages, HTML), ``study`` (the variant comparison of the finding),
``variant_result`` (one variant's study result, saved and loaded). The command is ``python -m workbench.sae``; its
body is ``command``.
"""
