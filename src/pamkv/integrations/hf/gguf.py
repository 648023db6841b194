"""A fast loader for LLaMA-architecture GGUF files (llama.cpp's format) into a transformers model.

transformers can load a GGUF itself (``from_pretrained(dir, gguf_file=name)``), but in the pinned
version it parses the file's metadata several times with a general-purpose reader; for
SmolLM2-135M that took 13 s on a quiet machine and over a minute on a busy one. This module reads the
file once: the header and metadata with ``struct`` over a memory map (the GGUF specification,
llama.cpp ``docs/gguf.md``: magic, version, tensor and key-value counts, typed key-value pairs, then
the tensor table and the aligned data), dequantises each tensor with the ``gguf`` package, builds the
``LlamaConfig`` from the ``llama.*`` keys and loads the weights.

One transform is undone: llama.cpp's converter stores the rows of the query and key projections of
each head interleaved for its rotary kernel — the two halves ``[x_0..x_{h/2-1} | x_{h/2}..x_{h-1}]``
that transformers' ``rotate_half`` pairs become ``[x_0, x_{h/2}, x_1, x_{h/2+1}, ...]`` — so
:func:`unpermute_rows` puts each head's rows back.

Only the plain LLaMA layout is handled here (the ``llama`` architecture, which llama.cpp also uses for
Mistral and SmolLM, without rope scaling); :func:`read_llama_gguf` raises
:class:`UnsupportedGGUF` for anything else and the caller falls back to transformers' own loader.
``tests/hf`` checks that both loaders give the same weights and config on a small file.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32  # GGUF spec: data aligned to general.alignment, 32 when absent

# GGUF metadata value types (spec): fixed-width scalars by struct format; 8 = string, 9 = array.
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class UnsupportedGGUF(Exception):
    """The file is valid GGUF but not a layout this loader handles (use transformers' loader)."""


class GGUFError(ValueError):
    """The file is not a readable GGUF file."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the file: name, shape in torch order (slowest dimension first), ggml type, data offset."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int


@dataclass(frozen=True)
class GGUFFile:
    """A GGUF file's metadata and tensor table; tensor data stays on disk until :meth:`tensor` reads it."""

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    data_start: int

    @property
    def architecture(self) -> str:
        """``general.architecture`` (e.g. ``'llama'``)."""
        return str(self.metadata.get("general.architecture", ""))

    def key(self, name: str, default: Any = None) -> Any:
        """The architecture-prefixed metadata key ``<arch>.<name>``."""
        return self.metadata.get(f"{self.architecture}.{name}", default)

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` dequantised to float32, in torch order."""
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import dequantize

        info = self.tensors[name]
        try:
            qtype = GGMLQuantizationType(info.ggml_type)
        except ValueError:
            raise UnsupportedGGUF(f"tensor {name}: unknown ggml type {info.ggml_type}") from None
        block, size = GGML_QUANT_SIZES[qtype]
        row = info.shape[-1]
        if row % block:
            raise GGUFError(f"{self.path}: tensor {name}: row of {row} is not a multiple of the {qtype.name} block")
        rows = int(np.prod(info.shape[:-1], dtype=np.int64))
        nbytes = rows * (row // block) * size
        with self.path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            start = self.data_start + info.offset
            if start + nbytes > len(mm):
                raise GGUFError(f"{self.path}: tensor {name} runs past the end of the file")
            raw = np.frombuffer(mm, dtype=np.uint8, count=nbytes, offset=start).reshape(rows, -1).copy()
        try:
            values = dequantize(raw, qtype)
        except NotImplementedError:
            raise UnsupportedGGUF(f"tensor {name}: no dequantiser for {qtype.name}") from None
        return np.asarray(values, dtype=np.float32).reshape(info.shape)


def _string(mm: Any, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", mm, pos)
    pos += 8
    return bytes(mm[pos: pos + n]).decode("utf-8", errors="replace"), pos + n


def _value(mm: Any, pos: int, vtype: int) -> tuple[Any, int]:
    if vtype in _SCALAR:
        fmt = _SCALAR[vtype]
        (v,) = struct.unpack_from(fmt, mm, pos)
        return v, pos + struct.calcsize(fmt)
    if vtype == _STRING:
        return _string(mm, pos)
    if vtype == _ARRAY:
        etype, count = struct.unpack_from("<IQ", mm, pos)
        pos += 12
        if etype in _SCALAR:
            fmt = _SCALAR[etype]
            width = struct.calcsize(fmt)
            vals = list(struct.unpack_from(f"<{count}{fmt[1]}", mm, pos))
            return vals, pos + count * width
        out = []
        for _ in range(count):
            v, pos = _value(mm, pos, etype)
            out.append(v)
        return out, pos
    raise GGUFError(f"unknown metadata value type {vtype}")


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse a GGUF file's header, metadata and tensor table (no tensor data is read)."""
    p = Path(path)
    try:
        with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if len(mm) < 24 or bytes(mm[:4]) != MAGIC:
                raise GGUFError(f"{p}: not a GGUF file (it does not start with 'GGUF')")
            version, n_tensors, n_kv = struct.unpack_from("<IQQ", mm, 4)
            if version not in VERSIONS:
                raise GGUFError(f"{p}: GGUF version {version} is not supported (2 or 3)")
            pos = 24
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key, pos = _string(mm, pos)
                (vtype,) = struct.unpack_from("<I", mm, pos)
                meta[key], pos = _value(mm, pos + 4, vtype)
            tensors: dict[str, TensorInfo] = {}
            for _ in range(n_tensors):
                name, pos = _string(mm, pos)
                (ndim,) = struct.unpack_from("<I", mm, pos)
                dims = struct.unpack_from(f"<{ndim}Q", mm, pos + 4)
                pos += 4 + 8 * ndim
                gtype, offset = struct.unpack_from("<IQ", mm, pos)
                pos += 12
                tensors[name] = TensorInfo(name, tuple(int(d) for d in reversed(dims)), int(gtype), int(offset))
    except (struct.error, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise GGUFError(f"{p}: truncated or corrupt GGUF header ({exc})") from exc
    align = int(meta.get("general.alignment", DEFAULT_ALIGNMENT))
    return GGUFFile(p, meta, tensors, -(-pos // align) * align)


def unpermute_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head interleaving of q/k projection rows (see the module docstring).

    ``w [heads * head_dim, ...]``: in each head's ``head_dim`` rows, row ``2i`` is original row ``i``
    and row ``2i+1`` is original row ``i + head_dim/2``.
    """
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_LAYER_MAP = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_TOP_MAP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def llama_config(f: GGUFFile) -> dict[str, Any]:
    """``LlamaConfig`` keyword arguments from the ``llama.*`` metadata (raises :class:`UnsupportedGGUF`)."""
    if f.architecture != "llama":
        raise UnsupportedGGUF(f"architecture '{f.architecture}' (this loader reads 'llama')")
    if f.key("rope.scaling.type") not in (None, "none") or "rope_freqs.weight" in f.tensors:
        raise UnsupportedGGUF("rope scaling")
    if f.key("expert_count"):
        raise UnsupportedGGUF("mixture of experts")
    need = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count")
    missing = [k for k in need if f.key(k) is None]
    if missing:
        raise GGUFError(f"{f.path}: missing metadata key(s) {', '.join('llama.' + k for k in missing)}")
    heads = int(f.key("attention.head_count"))
    hidden = int(f.key("embedding_length"))
    tokens = f.metadata.get("tokenizer.ggml.tokens")
    vocab = f.key("vocab_size") or (len(tokens) if isinstance(tokens, list) else None)
    if vocab is None:
        vocab = f.tensors["token_embd.weight"].shape[0]
    cfg: dict[str, Any] = {
        "num_hidden_layers": int(f.key("block_count")),
        "hidden_size": hidden,
        "intermediate_size": int(f.key("feed_forward_length")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(f.key("attention.head_count_kv", heads)),
        "head_dim": int(f.key("attention.key_length", hidden // heads)),
        "rms_norm_eps": float(f.key("attention.layer_norm_rms_epsilon", 1e-5)),
        "max_position_embeddings": int(f.key("context_length", 2048)),
        "vocab_size": int(vocab),
        "tie_word_embeddings": "output.weight" not in f.tensors,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(f.key("rope.freq_base", 10000.0))},
    }
    for name, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("pad_token_id", "padding_token_id")):
        v = f.metadata.get(f"tokenizer.ggml.{key}")
        if v is not None:
            cfg[name] = int(v)
    return cfg


def llama_state_dict(f: GGUFFile, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """The model's weights by transformers parameter name, float32 (raises :class:`UnsupportedGGUF`)."""
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out: dict[str, np.ndarray] = {}
    for name in f.tensors:
        if name in _TOP_MAP:
            out[_TOP_MAP[name]] = f.tensor(name)
            continue
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "blk" or parts[2] not in _LAYER_MAP:
            raise UnsupportedGGUF(f"tensor '{name}'")
        w = f.tensor(name)
        if parts[2] == "attn_q.weight":
            w = unpermute_rows(w, heads)
        elif parts[2] == "attn_k.weight":
            w = unpermute_rows(w, kv_heads)
        out[f"model.layers.{int(parts[1])}.{_LAYER_MAP[parts[2]]}"] = w
    return out


def read_llama_gguf(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Config keyword arguments and float32 weights of a LLaMA-layout GGUF file."""
    f = read_gguf(path)
    cfg = llama_config(f)
    return cfg, llama_state_dict(f, cfg)
