"""Analyses of PAL models: attention to audio, probes, ablations, patching, logit lens (see core.py)."""
