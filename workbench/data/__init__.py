"""Datasets for the workbench: the audiofolder format, a synthetic corpus generator with ground-truth
attributes and task rows, importers for real corpora, validation, and the torch Dataset/collate.

See ``workbench/data/README.md``. Submodules are imported on demand (``from workbench.data.dataset import
AudioTaskDataset``); importing this package is cheap.
"""
