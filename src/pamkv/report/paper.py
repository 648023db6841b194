"""The PAM paper's reported evaluation numbers, each with the section it comes from.

Source: Liu et al., "PAM: Processing Across Memory Hierarchy for Efficient KV-centric LLM Serving
System", arXiv 2602.11521v1, §7 (Evaluation). Figure labels follow our reproduction's numbering:
fig9 online, fig10 offline, fig11 energy, fig12 ablation, fig13 scaling (Figs 9-13 of §7).

A number is a value (``lo == hi``) or a range the paper reports over its runs (``lo < hi``). Speed-ups
are in ``x``; energy reductions in ``%`` lower than the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperNumber:
    """One reported result: a value or a range, its unit and where the paper states it."""

    figure: str
    """Our figure label (fig9 ... fig13)."""
    key: str
    """Stable identifier inside the figure, matched by the reproduction (e.g. ``model:opt-175b``)."""
    label: str
    """What the number is, in words."""
    lo: float
    hi: float
    unit: str
    """``x`` (speed-up) or ``%`` (lower energy than the baseline)."""
    section: str
    """Where the paper reports it."""

    @property
    def is_range(self) -> bool:
        """True when the paper gives a range over its runs rather than one value."""
        return self.hi != self.lo

    def text(self) -> str:
        """The number as the paper states it, e.g. ``12.88x`` or ``53.1-92.7%``."""
        if self.is_range:
            return f"{self.lo:g}-{self.hi:g}{self.unit}"
        return f"{self.lo:g}{self.unit}"


FIGURES: dict[str, str] = {
    "fig9": "Online serving: peak throughput within a TPOT SLO (PAM over vLLM-offload and LS-PIM)",
    "fig10": "Offline serving: throughput at fixed batches (PAM over vLLM-offload)",
    "fig11": "Energy per output token (PAM lower than vLLM-offload, L-PIM, LS-PIM)",
    "fig12": "Ablation: attention speed-up (LS-PIM = 1), small and large batch",
    "fig13": "Scaling: tensor/pipeline-parallel variants of the 8-GPU node (PAM over L-PIM)",
}
"""Our figure labels and what each shows."""


def _n(figure: str, key: str, label: str, lo: float, hi: float | None = None, unit: str = "x",
       section: str = "§7") -> PaperNumber:
    return PaperNumber(figure, key, label, lo, lo if hi is None else hi, unit, section)


_ONLINE = "§7 online results (Fig. 9)"
_OFFLINE = "§7 offline results (Fig. 10)"
_ENERGY = "§7 energy (Fig. 11)"
_ABLATION = "§7 ablation (Fig. 12)"
_SCALING = "§7 scalability (Fig. 13)"

PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    # Online: models x SLOs (100/150/200 ms) x datasets (ShareGPT, WildChat, HumanEval).
    _n("fig9", "avg:vllm-offload", "average speed-up over vLLM-offload", 12.88, section=_ONLINE),
    _n("fig9", "model:qwen2.5-32b", "Qwen2.5-32B, over vLLM-offload", 7.20, section=_ONLINE),
    _n("fig9", "model:llama-3-70b", "LLaMA3-70B, over vLLM-offload", 6.93, section=_ONLINE),
    _n("fig9", "model:opt-175b", "OPT-175B, over vLLM-offload", 24.53, section=_ONLINE),
    _n("fig9", "dataset:wildchat", "WildChat, over vLLM-offload", 13.76, section=_ONLINE),
    _n("fig9", "dataset:sharegpt", "ShareGPT, over vLLM-offload", 6.12, section=_ONLINE),
    _n("fig9", "avg:ls-pim", "average speed-up over LS-PIM", 4.54, section=_ONLINE),
    # Offline: LLaMA3-70B at batches 256/512/1024, OPT-175B at 16/32/64.
    _n("fig10", "llama-3-70b/arxiv-sum", "LLaMA3-70B, Arxiv_sum", 39.2, section=_OFFLINE),
    _n("fig10", "llama-3-70b/write-doc", "LLaMA3-70B, Write_doc", 25.2, section=_OFFLINE),
    _n("fig10", "opt-175b/arxiv-sum", "OPT-175B, Arxiv_sum", 33.0, section=_OFFLINE),
    _n("fig10", "opt-175b/write-doc", "OPT-175B, Write_doc", 8.26, section=_OFFLINE),
    _n("fig10", "avg", "average over models and datasets", 26.41, section=_OFFLINE),
    # Energy per output token: how much lower PAM's is, as a range over the runs.
    _n("fig11", "vllm-offload", "lower than vLLM-offload", 53.1, 92.7, "%", _ENERGY),
    _n("fig11", "l-pim", "lower than L-PIM", 7.8, 66.9, "%", _ENERGY),
    _n("fig11", "ls-pim", "lower than LS-PIM (attention energy)", 4.0, 18.7, "%", _ENERGY),
    # Ablation: attention speed-up with LS-PIM = 1.
    _n("fig12", "small:pam/ls-pim", "small batch: PAM over LS-PIM", 18.7, section=_ABLATION),
    _n("fig12", "small:pam/pam-no-pamattention", "small batch: PAM over w/o PAMattention", 1.93, section=_ABLATION),
    _n("fig12", "small:pam/pam-no-mapping", "small batch: PAM over w/o KV mapping", 2.06, section=_ABLATION),
    _n("fig12", "small:pam/pam-no-scheduling", "small batch: PAM over w/o KV scheduling", 2.74, section=_ABLATION),
    _n("fig12", "large:pam/ls-pim", "large batch: PAM over LS-PIM", 48.56, section=_ABLATION),
    _n("fig12", "large:pam/pam-no-pamattention", "large batch: PAM over w/o PAMattention", 2.35, section=_ABLATION),
    _n("fig12", "large:pam/pam-no-mapping", "large batch: PAM over w/o KV mapping", 4.15, section=_ABLATION),
    _n("fig12", "large:pam/pam-no-scheduling", "large batch: PAM over w/o KV scheduling", 4.62, section=_ABLATION),
    # Scaling: Write_doc, 1024 requests, TP/PP variants of the node.
    _n("fig13", "l-pim", "PAM over L-PIM across TP/PP variants", 6.03, 16.96, section=_SCALING),
)

PAPER_CLAIMS: dict[str, str] = {
    "fig10": "AttAcc runs out of memory in most offline runs",
    "fig13": "tensor parallelism beats pipeline parallelism",
}
"""Qualitative findings the reproduction checks (figure -> claim)."""


def paper_numbers(figure: str) -> list[PaperNumber]:
    """The paper's numbers for one of our figure labels, in reporting order."""
    return [p for p in PAPER_NUMBERS if p.figure == figure]


def paper_number(figure: str, key: str) -> PaperNumber:
    """One reported number by figure and key (KeyError if the paper gives none)."""
    for p in PAPER_NUMBERS:
        if p.figure == figure and p.key == key:
            return p
    raise KeyError(f"{figure}/{key}")
