"""Resumable multi-step jobs: the step runner (``steps``) and the demo built on it (``demo``, ``demo_inside``,
``demo_analyses``)."""
