"""The batch loop's decode step for Llama-architecture models, in fewer ops than transformers' forward.

A decode step on a small model is a few hundred small ops besides the linear layers, each a
few microseconds of dispatch; on SmolLM2-135M (2 threads) transformers' forward spent 12 ms
a step outside the GEMMs (docs/performance.md). This is the same math for the one case the
batch loop runs at every step, one new token per row over the running batch's KV slab:

- RMSNorm as ``F.rms_norm`` (one op instead of six);
- q, k and v from the one packed projection (service.engine.cpu_linear), rotated together;
- attention on the key/value heads, a group's queries as its rows (transformers' ``pack_gqa``
  for one query), with no mask when no row is padded;
- gate and up from the one packed projection, split.

Models it does not know (another architecture, a sliding window, unpacked weights) keep
transformers' forward. Logits match it to float rounding (tests/engine/test_decode_step.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers.cache_utils import Cache, DynamicLayer

from service.engine.cpu_linear import PackedProjections, SharedInputLinear

# Decoder-only models whose layers are Llama's: pre-norm RMSNorm, rotary q/k, SiLU-gated MLP.
_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


@dataclass(frozen=True)
class _Layer:
    input_norm: torch.Tensor
    input_eps: float
    qkv: PackedProjections
    o_proj: torch.nn.Module
    post_norm: torch.Tensor
    post_eps: float
    gate_up: PackedProjections
    down_proj: torch.nn.Module
    scaling: float


class DecodeStep:
    """``step(tokens, attention_mask, positions, cache)``: the next-token logits of every row."""

    def __init__(self, model: torch.nn.Module) -> None:
        config = cast(Any, model).config
        self._model = model
        self._inner = cast(Any, model).model
        self._heads = config.num_attention_heads
        self._kv_heads = config.num_key_value_heads
        self._head_dim = getattr(config, "head_dim", None) or config.hidden_size // self._heads
        self._hidden = config.hidden_size
        self._intermediate = config.intermediate_size
        self._layers = [_layer(layer) for layer in self._inner.layers]

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> DecodeStep | None:
        """A decode step for ``model``, or None when only transformers' forward knows it."""
        config = getattr(model, "config", None)
        if type(model).__name__ not in _ARCHITECTURES or config is None:
            return None
        if getattr(config, "hidden_act", None) != "silu" or _slides(config):
            return None
        layers = getattr(getattr(model, "model", None), "layers", None)
        if not layers or not all(_packed(layer) for layer in layers):
            return None
        return cls(model)

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor, cache: Cache
    ) -> torch.Tensor:
        rows, heads, kv_heads, head_dim = tokens.shape[0], self._heads, self._kv_heads, self._head_dim
        hidden = self._inner.embed_tokens(tokens)  # [rows, 1, hidden]
        cos, sin = self._inner.rotary_emb(hidden, positions)  # [rows, 1, head_dim]
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # over the heads
        # One query attends to every column in use; only padding on the left is masked.
        mask = None if bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]
        half = head_dim // 2
        cache_layers = cast(list[DynamicLayer], cache.layers)  # the running batch's slabs
        for layer, cache_layer in zip(self._layers, cache_layers, strict=True):
            normed = F.rms_norm(hidden, (self._hidden,), layer.input_norm, layer.input_eps)
            qkv = layer.qkv.project(normed).view(rows, 1, heads + 2 * kv_heads, head_dim)
            qk = qkv[:, :, : heads + kv_heads]
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin
            # A key/value head's queries as its rows: attention on the cache as it is, no repeat.
            query = qk[:, 0, :heads].reshape(rows, kv_heads, heads // kv_heads, head_dim)
            keys, values = cache_layer.update(
                qk[:, :, heads:].transpose(1, 2), qkv[:, :, heads + kv_heads :].transpose(1, 2)
            )
            attended = F.scaled_dot_product_attention(
                query, keys, values, attn_mask=mask, scale=layer.scaling
            )
            hidden = hidden + layer.o_proj(attended.reshape(rows, 1, heads * head_dim))
            normed = F.rms_norm(hidden, (self._hidden,), layer.post_norm, layer.post_eps)
            gate, up = layer.gate_up.project(normed).split(self._intermediate, dim=-1)
            hidden = hidden + layer.down_proj(F.silu(gate) * up)
        norm = self._inner.norm
        hidden = F.rms_norm(hidden[:, -1], (self._hidden,), norm.weight, norm.variance_epsilon)
        return cast(torch.Tensor, cast(Any, self._model).lm_head(hidden))


def _slides(config: Any) -> bool:
    """Whether attention is limited to a window (Mistral's sliding_window, Qwen2's use_sliding_window)."""
    if getattr(config, "use_sliding_window", False):
        return True
    return getattr(config, "sliding_window", None) is not None and not hasattr(config, "use_sliding_window")


def _packed(layer: Any) -> bool:
    """q/k/v and gate/up each one packed projection, in that order (cpu_linear's groups)."""
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    names = [(attention, ("q_proj", "k_proj", "v_proj")), (mlp, ("gate_proj", "up_proj"))]
    for module, group in names:
        members = [getattr(module, name, None) for name in group]
        if not all(isinstance(member, SharedInputLinear) for member in members):
            return False
        shared = cast(list[SharedInputLinear], members)
        if len({id(member.projections[0]) for member in shared}) != 1 or shared[0].start != 0:
            return False
        if any(before.end != after.start for before, after in itertools.pairwise(shared)):
            return False
    return hasattr(layer, "input_layernorm") and hasattr(layer, "post_attention_layernorm")


def _layer(layer: Any) -> _Layer:
    attention, mlp = layer.self_attn, layer.mlp
    return _Layer(
        input_norm=layer.input_layernorm.weight,
        input_eps=layer.input_layernorm.variance_epsilon,
        qkv=attention.q_proj.projections[0],
        o_proj=attention.o_proj,
        post_norm=layer.post_attention_layernorm.weight,
        post_eps=layer.post_attention_layernorm.variance_epsilon,
        gate_up=mlp.gate_proj.projections[0],
        down_proj=mlp.down_proj,
        scaling=attention.scaling,
    )
