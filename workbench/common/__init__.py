"""The bottom layer: what every stage shares and nothing of the workbench is imported by it.

``paths`` (cache folders, atomic writes), ``errors`` (shared error classes), ``constants`` (names defined once),
``audio_io`` (load, resample, mono-mix and pad waveforms).
"""
