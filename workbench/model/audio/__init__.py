"""How audio enters the decoder: the two integration modes of the paper and the plan that joins them.

* `plits` -- PLITS: audio tokens reserve residual slots in the prompt, stay dead (no key, output held at zero)
  until their layer L, where they are written into the residual stream (``blocks.{L}.hook_audio_in``).
* `lal` -- LAL: audio tokens never enter the residual stream; every layer l >= L reads them as extra keys/values
  (``blocks.{l}.attn.hook_audio_k/v``) made by that layer's input norm and W_K/W_V (+ adapter, + gate).
* `plan` -- `AudioPlan`: what one batch's audio does to the decoder (slots, PLITS writes per layer, LAL K/V per
  layer), computed once before layer 0; `HookedDecoder.decode` only reads it.
"""
