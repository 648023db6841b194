"""Integrations: PAM under real model runtimes, and the attention recordings they produce.

- :mod:`pamkv.integrations.recording` — the attention recording a real run writes (the recorded-trace
  format of :mod:`pamkv.workloads.locality.replay`, plus run facts) and the context-locality figures
  of ``../shared/reference/locality.md`` measured from one. numpy only.
- :mod:`pamkv.integrations.hf` — a Hugging Face ``transformers`` cache whose KV lives in the tiered
  store and an attention function computing PAMattention over the per-device parts. Needs the
  optional ``pamkv[hf]`` extra (torch, transformers, gguf); nothing here imports torch until asked.
"""
