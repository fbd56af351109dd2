"""The model: the hooked decoder (``decoder``, ``layers``), the audio path (encoders' connectors, PLITS and LAL
integration), the PAL model (``pal``), released audio-LLMs (``released``), and inference for ``ask`` (``inference``).

Importing the package registers released audio-LLMs as a checkpoint kind, so ``PALModel.from_pretrained`` opens
their folders and hub ids too (`workbench.model.pal_checkpoint.CHECKPOINT_KINDS`).
"""

from workbench.model import released  # noqa: F401  (registers released checkpoints with PALModel.from_pretrained)
