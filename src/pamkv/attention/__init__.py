"""PAMattention: exact split/merge softmax attention over where the KV lives, and sparse selection.

- :func:`partial_attention` / :func:`partial_attention_multi`: one part's ``Partial(out, lse)``.
- :func:`merge_two`, :func:`merge_to_partial`, :func:`merge_partials`, :func:`merge_segments`:
  exact merging in any tree; empty parts contribute nothing.
- :func:`hierarchical_attention`: tiles -> bank groups -> devices, bottom-up.
- :func:`dense_attention`: the plain reference.
- Selection (:mod:`pamkv.attention.selection`): dense, oracle top-k, Double Sparsity, Quest; and
  :func:`sparse_report` (error and mass captured versus dense).

numpy arrays or torch tensors in, the same kind out; torch is imported only when given a tensor.
"""

from pamkv.attention.core import (
    Partial,
    dense_attention,
    partial_attention,
    partial_attention_multi,
)
from pamkv.attention.hierarchy import (
    flatten_partition,
    hierarchical_attention,
    partition_from_assignment,
    tile_partials,
)
from pamkv.attention.merge import (
    empty_partial,
    merge_partials,
    merge_segments,
    merge_to_partial,
    merge_two,
)
from pamkv.attention.report import (
    SparseReport,
    captured_mass,
    gather_selected,
    sparse_attention,
    sparse_report,
)
from pamkv.attention.selection import (
    DEFAULT_RATIO,
    QUEST_PAGE_TOKENS,
    LabelChannels,
    PageBounds,
    Selection,
    SelectionConfig,
    attention_probs,
    calibrate_labels,
    page_bounds,
    page_upper_bounds,
    resolve_budget,
    select,
    select_dense,
    select_double_sparsity,
    select_oracle_topk,
    select_quest,
)

__all__ = [
    "DEFAULT_RATIO",
    "QUEST_PAGE_TOKENS",
    "LabelChannels",
    "PageBounds",
    "Partial",
    "Selection",
    "SelectionConfig",
    "SparseReport",
    "attention_probs",
    "calibrate_labels",
    "captured_mass",
    "dense_attention",
    "empty_partial",
    "flatten_partition",
    "gather_selected",
    "hierarchical_attention",
    "merge_partials",
    "merge_segments",
    "merge_to_partial",
    "merge_two",
    "page_bounds",
    "page_upper_bounds",
    "partial_attention",
    "partial_attention_multi",
    "partition_from_assignment",
    "resolve_budget",
    "select",
    "select_dense",
    "select_double_sparsity",
    "select_oracle_topk",
    "select_quest",
    "sparse_attention",
    "sparse_report",
    "tile_partials",
]
