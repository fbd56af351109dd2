"""Evaluation: greedy answers of a model for every task row (``evaluator``), their scores (``metrics``) and the one
reader of answers CSVs (``answers``)."""
