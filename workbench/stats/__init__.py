"""Statistics shared by the analyses and the claims: the one bootstrap and the seed-aware interval with its verdict
rule (``bootstrap``). Imports nothing of the workbench."""
