"""Convert the shared real traces into the compact files pamkv ships in ``src/pamkv/data/``.

Usage (from the repository root): ``.venv/bin/python scripts/pack_data.py [--shared DIR]``.
``DIR`` defaults to the ``shared/data`` folder beside the repository checkout. Each trace is read with
pamkv's own readers (no row may be bad) and written as a compressed pamkv ``.npz`` trace holding only
the columns the workloads need; the script then checks every packed file reads back identical.
Licences (CC-BY 4.0, Apache-2.0, MIT) permit redistribution with attribution: see ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pamkv.workloads.native import save_trace  # noqa: E402
from pamkv.workloads.readers import read_trace  # noqa: E402

# packaged name -> (shared file, format, description for the trace's source field)
PACKS: dict[str, tuple[str, str, str]] = {
    "azure_conv": (
        "AzureLLMInferenceTrace_conv.csv", "azure",
        "Azure LLM inference trace 2023, conversation (Azure/AzurePublicDataset, CC-BY 4.0)",
    ),
    "azure_code": (
        "AzureLLMInferenceTrace_code.csv", "azure",
        "Azure LLM inference trace 2023, code (Azure/AzurePublicDataset, CC-BY 4.0)",
    ),
    "mooncake_conv": (
        "mooncake_conversation_trace.jsonl", "mooncake",
        "Mooncake conversation trace (kvcache-ai/Mooncake FAST25-release, Apache-2.0)",
    ),
    "sharegpt_lengths": (
        "sharegpt_lengths_llama2_tokenizer.csv", "lengths",
        "ShareGPT lengths, LLaMA-2 tokenizer, <= 8k (microsoft/sarathi-serve, Apache-2.0)",
    ),
    "arxiv_lengths": (
        "arxiv_summarization_lengths_llama2_tokenizer.csv", "lengths",
        "arXiv summarization lengths, LLaMA-2 tokenizer, <= 4k (microsoft/vidur, MIT)",
    ),
}


def main() -> int:
    """Pack every trace, verify the round trip, print sizes; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "pamkv" / "data", help="output folder")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, (file, fmt, source) in PACKS.items():
        trace = read_trace(args.shared / file, format=fmt, name=name)
        if trace.skipped_rows:
            print(f"{file}: {trace.skipped_rows} bad rows", file=sys.stderr)
            return 1
        trace = replace(trace, source=source)
        target = args.out / f"{name}.npz"
        save_trace(trace, target)
        back = read_trace(target)
        same = (
            np.array_equal(back.arrival_s, trace.arrival_s)
            and np.array_equal(back.input_tokens, trace.input_tokens)
            and np.array_equal(back.output_tokens, trace.output_tokens)
            and (trace.hash_ids is None or np.array_equal(back.hash_ids, trace.hash_ids))
        )
        if not same:
            print(f"{target}: does not read back identical", file=sys.stderr)
            return 1
        size = target.stat().st_size
        total += size
        print(f"{target.relative_to(REPO)}: {len(trace)} requests, {size / 1e3:.0f} kB")
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
