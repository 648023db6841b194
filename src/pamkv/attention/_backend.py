"""The handful of array operations PAMattention needs, for numpy arrays and torch tensors alike.

Every public function in :mod:`pamkv.attention` takes numpy arrays or torch tensors and returns the
same kind. This module hides the few places where the two APIs differ. torch is imported only when a
torch tensor is actually passed in (it is an optional extra), so the numpy path runs without it.

Precision rule: inputs are computed in float32 at least — float16 (and torch bfloat16) inputs are
upcast before any arithmetic, so sums and exponentials accumulate in float32; float64 inputs stay
float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

Array = Any
"""A numpy ``ndarray`` or a torch ``Tensor``."""


def is_torch(x: object) -> bool:
    """True when ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.split(".", 1)[0] == "torch"


class NumpyOps:
    """Array operations on numpy arrays."""

    name = "numpy"

    @staticmethod
    def compute_dtype(*xs: Array) -> Any:
        """float64 if any input is float64, otherwise float32 (float16 and integers are upcast)."""
        return np.float64 if any(np.asarray(x).dtype == np.float64 for x in xs) else np.float32

    @staticmethod
    def cast(x: Array, dtype: Any) -> Array:
        return np.asarray(x).astype(dtype, copy=False)

    @staticmethod
    def as_index(x: Array, like: Array) -> Array:
        return np.asarray(x, dtype=np.int64)

    @staticmethod
    def as_bool(x: Array, like: Array) -> Array:
        return np.asarray(x, dtype=bool)

    @staticmethod
    def zeros(shape: Sequence[int], like: Array) -> Array:
        return np.zeros(tuple(shape), dtype=like.dtype)

    @staticmethod
    def full(shape: Sequence[int], value: float, like: Array) -> Array:
        return np.full(tuple(shape), value, dtype=like.dtype)

    @staticmethod
    def arange(n: int, like: Array) -> Array:
        return np.arange(n, dtype=np.int64)

    @staticmethod
    def exp(x: Array) -> Array:
        return np.exp(x)

    @staticmethod
    def log(x: Array) -> Array:
        """Natural log; log(0) = -inf without a warning."""
        with np.errstate(divide="ignore"):
            return np.log(x)

    @staticmethod
    def amax(x: Array, axis: int, keepdims: bool = False) -> Array:
        return np.max(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def sum(x: Array, axis: int, keepdims: bool = False) -> Array:
        return np.sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def mean(x: Array, axis: int, keepdims: bool = False) -> Array:
        return np.mean(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def abs(x: Array) -> Array:
        return np.abs(x)

    @staticmethod
    def where(cond: Array, a: Array, b: Array | float) -> Array:
        return np.where(cond, a, b)

    @staticmethod
    def isfinite(x: Array) -> Array:
        return np.isfinite(x)

    @staticmethod
    def clip_min(x: Array, lo: float) -> Array:
        return np.maximum(x, lo)

    @staticmethod
    def clip_max(x: Array, hi: float) -> Array:
        return np.minimum(x, hi)

    @staticmethod
    def permute(x: Array, axes: Sequence[int]) -> Array:
        return np.transpose(x, tuple(axes))

    @staticmethod
    def contiguous(x: Array) -> Array:
        return np.ascontiguousarray(x)

    @staticmethod
    def broadcast_to(x: Array, shape: Sequence[int]) -> Array:
        return np.broadcast_to(x, tuple(shape))

    @staticmethod
    def stack(xs: Sequence[Array], axis: int = 0) -> Array:
        return np.stack(list(xs), axis=axis)

    @staticmethod
    def repeat(x: Array, n: int, axis: int) -> Array:
        return np.repeat(x, n, axis=axis)

    @staticmethod
    def einsum(spec: str, *xs: Array) -> Array:
        return np.einsum(spec, *xs)

    @staticmethod
    def take_along(x: Array, idx: Array, axis: int) -> Array:
        return np.take_along_axis(x, idx, axis=axis)

    @staticmethod
    def sort(x: Array, axis: int = -1) -> Array:
        return np.sort(x, axis=axis)

    @staticmethod
    def topk_indices(x: Array, k: int) -> Array:
        """Indices of the ``k`` largest entries along the last axis, in no particular order."""
        if k >= x.shape[-1]:
            return np.broadcast_to(np.arange(x.shape[-1], dtype=np.int64), x.shape).copy()
        return np.argpartition(-x, k - 1, axis=-1)[..., :k].astype(np.int64, copy=False)

    @staticmethod
    def _segment_reduce(ufunc: np.ufunc, idx: Array, src: Array, n: int, empty: float) -> Array:
        # Lay the members of each segment side by side ([n, widest, ...], padded with the identity)
        # and reduce along that axis: contiguous and fast. ufunc.at / reduceat are much slower on
        # wide rows; reduceat stays as the fallback when segment sizes are very uneven.
        idx = np.asarray(idx, dtype=np.int64)
        out = np.full((n, *src.shape[1:]), empty, dtype=src.dtype)
        if idx.size == 0:
            return out
        order = np.argsort(idx, kind="stable")
        counts = np.bincount(idx, minlength=n)
        widest = int(counts.max())
        if n * widest <= 2 * idx.size + 64:
            first = np.cumsum(counts) - counts
            seg = idx[order]
            padded = np.full((n, widest, *src.shape[1:]), empty, dtype=src.dtype)
            padded[seg, np.arange(idx.size) - first[seg]] = src[order]
            return ufunc.reduce(padded, axis=1)
        present = counts > 0
        starts = (np.cumsum(counts) - counts)[present]
        out[present] = ufunc.reduceat(src[order], starts, axis=0)
        return out

    @classmethod
    def segment_max(cls, idx: Array, src: Array, n: int) -> Array:
        """``out[j] = max(src[i] for i with idx[i] == j)`` along axis 0; -inf where no ``i``."""
        return cls._segment_reduce(np.maximum, idx, src, n, -np.inf)

    @classmethod
    def segment_sum(cls, idx: Array, src: Array, n: int) -> Array:
        """``out[j] = sum(src[i] for i with idx[i] == j)`` along axis 0."""
        return cls._segment_reduce(np.add, idx, src, n, 0.0)

    @staticmethod
    def mask_from_indices(idx: Array, n: int) -> Array:
        """``[R, n]`` bool, True at ``(r, idx[r, j])``."""
        m = np.zeros((idx.shape[0], n), dtype=bool)
        np.put_along_axis(m, idx, True, axis=1)
        return m

    @staticmethod
    def to_numpy(x: Array) -> np.ndarray:
        return np.asarray(x)


class TorchOps:
    """The same operations on torch tensors (torch is imported on first use)."""

    name = "torch"

    @staticmethod
    def _t() -> Any:
        import torch

        return torch

    @classmethod
    def compute_dtype(cls, *xs: Array) -> Any:
        torch = cls._t()
        return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32

    @staticmethod
    def cast(x: Array, dtype: Any) -> Array:
        return x.to(dtype)

    @classmethod
    def as_index(cls, x: Array, like: Array) -> Array:
        torch = cls._t()
        if is_torch(x):
            return x.to(device=like.device, dtype=torch.int64)
        return torch.as_tensor(np.asarray(x, dtype=np.int64), device=like.device)

    @classmethod
    def as_bool(cls, x: Array, like: Array) -> Array:
        torch = cls._t()
        if is_torch(x):
            return x.to(device=like.device, dtype=torch.bool)
        return torch.as_tensor(np.asarray(x, dtype=bool), device=like.device)

    @classmethod
    def zeros(cls, shape: Sequence[int], like: Array) -> Array:
        return cls._t().zeros(tuple(shape), dtype=like.dtype, device=like.device)

    @classmethod
    def full(cls, shape: Sequence[int], value: float, like: Array) -> Array:
        return cls._t().full(tuple(shape), value, dtype=like.dtype, device=like.device)

    @classmethod
    def arange(cls, n: int, like: Array) -> Array:
        torch = cls._t()
        return torch.arange(n, dtype=torch.int64, device=like.device)

    @classmethod
    def exp(cls, x: Array) -> Array:
        return cls._t().exp(x)

    @classmethod
    def log(cls, x: Array) -> Array:
        return cls._t().log(x)

    @classmethod
    def amax(cls, x: Array, axis: int, keepdims: bool = False) -> Array:
        return cls._t().amax(x, dim=axis, keepdim=keepdims)

    @classmethod
    def sum(cls, x: Array, axis: int, keepdims: bool = False) -> Array:
        return cls._t().sum(x, dim=axis, keepdim=keepdims)

    @classmethod
    def mean(cls, x: Array, axis: int, keepdims: bool = False) -> Array:
        return cls._t().mean(x, dim=axis, keepdim=keepdims)

    @classmethod
    def abs(cls, x: Array) -> Array:
        return cls._t().abs(x)

    @classmethod
    def where(cls, cond: Array, a: Array, b: Array | float) -> Array:
        torch = cls._t()
        if not is_torch(b):
            b = torch.tensor(b, dtype=a.dtype, device=a.device)
        return torch.where(cond, a, b)

    @classmethod
    def isfinite(cls, x: Array) -> Array:
        return cls._t().isfinite(x)

    @classmethod
    def clip_min(cls, x: Array, lo: float) -> Array:
        return cls._t().clamp(x, min=lo)

    @classmethod
    def clip_max(cls, x: Array, hi: float) -> Array:
        return cls._t().clamp(x, max=hi)

    @staticmethod
    def permute(x: Array, axes: Sequence[int]) -> Array:
        return x.permute(*axes)

    @staticmethod
    def contiguous(x: Array) -> Array:
        return x.contiguous()

    @staticmethod
    def broadcast_to(x: Array, shape: Sequence[int]) -> Array:
        return x.broadcast_to(tuple(shape))

    @classmethod
    def stack(cls, xs: Sequence[Array], axis: int = 0) -> Array:
        return cls._t().stack(list(xs), dim=axis)

    @staticmethod
    def repeat(x: Array, n: int, axis: int) -> Array:
        return x.repeat_interleave(n, dim=axis)

    @classmethod
    def einsum(cls, spec: str, *xs: Array) -> Array:
        return cls._t().einsum(spec, *xs)

    @classmethod
    def take_along(cls, x: Array, idx: Array, axis: int) -> Array:
        return cls._t().take_along_dim(x, idx, dim=axis)

    @classmethod
    def sort(cls, x: Array, axis: int = -1) -> Array:
        return cls._t().sort(x, dim=axis).values

    @classmethod
    def topk_indices(cls, x: Array, k: int) -> Array:
        return cls._t().topk(x, k, dim=-1, sorted=False).indices

    @classmethod
    def segment_max(cls, idx: Array, src: Array, n: int) -> Array:
        out = cls._t().full((n, *src.shape[1:]), -math.inf, dtype=src.dtype, device=src.device)
        index = idx.reshape(-1, *([1] * (src.ndim - 1))).expand(src.shape)
        return out.scatter_reduce(0, index, src, "amax", include_self=True)

    @classmethod
    def segment_sum(cls, idx: Array, src: Array, n: int) -> Array:
        out = cls._t().zeros((n, *src.shape[1:]), dtype=src.dtype, device=src.device)
        return out.index_add(0, idx, src)

    @classmethod
    def mask_from_indices(cls, idx: Array, n: int) -> Array:
        torch = cls._t()
        m = torch.zeros((idx.shape[0], n), dtype=torch.bool, device=idx.device)
        return m.scatter(1, idx, True)

    @staticmethod
    def to_numpy(x: Array) -> np.ndarray:
        return np.asarray(x.detach().cpu().numpy())


Ops = type[NumpyOps] | type[TorchOps]


def backend(*xs: Array) -> Ops:
    """The operations for these inputs: all numpy (or array-likes) or all torch; mixing is an error."""
    kinds = {is_torch(x) for x in xs if x is not None}
    if len(kinds) > 1:
        raise TypeError("pamkv.attention: inputs mix numpy arrays and torch tensors; pass one kind")
    return TorchOps if kinds == {True} else NumpyOps


def to_compute(ops: Ops, *xs: Array) -> list[Array]:
    """Cast all inputs to their common compute dtype (float32, or float64 if any input is float64)."""
    arrays = [x if ops is TorchOps else np.asarray(x) for x in xs]
    dtype = ops.compute_dtype(*arrays)
    return [ops.cast(x, dtype) for x in arrays]
