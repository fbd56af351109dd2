"""The paper's claims and their evidence: the registry (``registry``), variant comparisons (``compare``),
seed-aware contrasts (``seeds``), the injection-layer curve (``layer_curve``) and the verdicts (``verdict``)."""
