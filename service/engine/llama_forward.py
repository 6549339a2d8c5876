"""The batch loop's forward pass for Llama-architecture models, in fewer ops than transformers'.

A decode step on a small model is a few hundred small ops besides the linear layers, each a
few microseconds of dispatch; on SmolLM2-135M (2 threads) transformers' forward spent 12 ms
a step outside the GEMMs (docs/performance.md). This is the same math for the two cases the
batch loop runs most: a decode step, one new token per row over the running batch's KV slab,
and the prefill of new prompts, packed end to end without padding:

- RMSNorm as ``F.rms_norm`` (one op instead of six);
- q, k and v from the one packed projection (service.engine.cpu_linear), rotated together;
- decode attention on the key/value heads, a group's queries as its rows (transformers'
  ``pack_gqa`` for one query); prefill attention causal within each prompt, in float32 with
  RoPE in a numba kernel and the attention there too for short prompts, SDPA for long ones
  (service.engine.prefill_kernels);
- a decode step over the running batch's KV slab (float32): between the linear layers, numba
  kernels of our own (service.engine.decode_kernels): RoPE, the cache write and attention in
  one, the residual add and RMSNorm in one (the latter in float32 prefills too);
- gate and up from the one packed projection, split;
- a decode step carrying new prompts (:meth:`LlamaForward.step_carrying`): their tokens after
  the rows' through the linear layers, each part's attention its own kernel's.

Models it does not know (another architecture, a sliding window, unpacked weights) keep
transformers' forward, and so do chunked prefills. Logits match transformers' to
float rounding (tests/engine/test_llama_forward.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers.cache_utils import Cache

from service.engine.cpu_linear import PackedProjections, SharedInputLinear
from service.engine.decode_kernels import add_rms_norm, attention_block, slab_supported
from service.engine.kv_slab import SlabLayer
from service.engine.prefill_kernels import PackedPrompts, prefill_attention, prefill_supported

# Decoder-only models whose layers are Llama's: pre-norm RMSNorm, rotary q/k, SiLU-gated MLP.
_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")


# attend(query [rows, heads, length, head_dim], keys, values, scale, layer index) -> query's shape
_Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, int], torch.Tensor]


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


class LlamaForward:
    """``step(tokens, attention_mask, positions, cache)``: the next-token logits of every row;
    :meth:`prefill` for new prompts."""

    def __init__(self, model: torch.nn.Module, decode_kernels: bool = True) -> None:
        """``decode_kernels=False``: decode steps with SDPA and torch's RMSNorm everywhere, for
        comparing (scripts/measure_forward.py)."""
        config = cast(Any, model).config
        self._model = model
        self._decode_kernels = decode_kernels
        self._inner = cast(Any, model).model
        self._heads = config.num_attention_heads
        self._kv_heads = config.num_key_value_heads
        self._head_dim = getattr(config, "head_dim", None) or config.hidden_size // self._heads
        self._hidden = config.hidden_size
        self._intermediate = config.intermediate_size
        self._layers = [_layer(layer) for layer in self._inner.layers]

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> LlamaForward | None:
        """The forward pass for ``model``, or None when only transformers' forward knows it."""
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
        """One new token per row (``tokens`` [rows, 1]) over the running batch's cache."""
        slabs = [layer for layer in cache.layers if isinstance(layer, SlabLayer)]
        if self._decode_kernels and len(slabs) == len(cache.layers) and slab_supported(slabs[0].slab_keys):
            return self._decode_over_slabs(tokens, attention_mask, positions, slabs)
        rows, kv_heads, group = tokens.shape[0], self._kv_heads, self._heads // self._kv_heads
        # One query attends to every column in use; only padding on the left is masked.
        mask = None if bool(attention_mask.all()) else attention_mask.bool()[:, None, None, :]

        def attend(
            query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float, index: int
        ) -> torch.Tensor:
            # A key/value head's queries as its rows (transformers' pack_gqa): no repeated cache.
            packed = query.reshape(rows, kv_heads, group, self._head_dim)
            attended = F.scaled_dot_product_attention(packed, keys, values, attn_mask=mask, scale=scale)
            return attended.reshape(query.shape)

        return self._forward(tokens, positions, cache, attend)

    def prefill(self, prompts: Sequence[Sequence[int]], cache: Cache) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole prompts of any lengths into an empty ``cache``, left-padded to the longest as the
        batch loop joins rows: their attention mask and each prompt's last-position logits.

        The prompts run packed end to end, one sequence with no padding through the linear
        layers (a padded pass of 43- to 52-token prompts spends a sixth of its GEMMs on
        padding), each attending causally to itself only.
        """
        device = self._inner.embed_tokens.weight.device
        packed = _Packed(prompts, cache, device)
        starts, lengths = packed.starts, packed.lengths

        def attend(
            query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float, index: int
        ) -> torch.Tensor:
            attended = torch.empty_like(query)
            for start, length in zip(starts, lengths, strict=True):
                span = slice(start, start + length)
                attended[:, :, span] = F.scaled_dot_product_attention(
                    query[:, :, span],
                    keys[:, :, span],
                    values[:, :, span],
                    is_causal=True,
                    scale=scale,
                    enable_gqa=True,
                )
            return attended

        tokens, positions = packed.tokens.unsqueeze(0), packed.positions.unsqueeze(0)
        kernels = self._decode_kernels and prefill_supported(self._inner.embed_tokens.weight)
        prompts_for_kernel = PackedPrompts(lengths) if kernels else None
        logits = self._forward(tokens, positions, packed.cache, attend, packed.last, prompts_for_kernel)
        return packed.attention_mask, logits

    def carries_prompts(self, cache: Cache | None) -> bool:
        """Whether :meth:`step_carrying` runs over this running batch's cache: its slabs, for the
        decode kernels (float32 on the CPU)."""
        if not self._decode_kernels or cache is None or not cache.layers:
            return False
        slabs = [layer for layer in cache.layers if isinstance(layer, SlabLayer)]
        return len(slabs) == len(cache.layers) and slab_supported(slabs[0].slab_keys)

    def step_carrying(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Cache,
        prompts: Sequence[Sequence[int]],
        prompt_cache: Cache,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A decode step (as ``__call__``) that carries the prefill of new ``prompts``: their
        tokens go through the linear layers with the running rows', so the weights are read once
        for both (vLLM's chunked prefill mixes them the same way). Returns the rows' next-token
        logits, and as :meth:`prefill` does the prompts' attention mask and last-position logits,
        their keys and values in the empty ``prompt_cache``. Needs :meth:`carries_prompts`."""
        slabs = [cast(SlabLayer, layer) for layer in cache.layers]
        packed = _Packed(prompts, prompt_cache, tokens.device)
        logits = self._decode_over_slabs(tokens, attention_mask, positions, slabs, packed)
        rows = tokens.shape[0]
        return logits[:rows], packed.attention_mask, logits[rows:]

    def _decode_over_slabs(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor,
        positions: torch.Tensor,
        slabs: list[SlabLayer],
        carried: _Packed | None = None,
    ) -> torch.Tensor:
        """A decode step over the running batch's slabs (float32, CPU): between the linear layers,
        service.engine.decode_kernels' attention block and residual-add-and-RMSNorm. ``carried``:
        prompts prefilled in the same pass, after the rows (their logits after the rows')."""
        rows = tokens.shape[0]
        ids, where = tokens.view(rows), positions.view(rows)
        if carried is not None:
            ids, where = torch.cat([ids, carried.tokens]), torch.cat([where, carried.positions])
        kernel_prompts = PackedPrompts(carried.lengths) if carried is not None else None
        hidden = self._inner.embed_tokens(ids)  # [tokens, hidden], a new tensor: added to in place
        cos, sin = self._inner.rotary_emb(hidden, where.unsqueeze(0))  # [1, tokens, head_dim]
        cos, sin = cos[0], sin[0]
        mask = attention_mask.to(torch.uint8).contiguous()
        first = self._layers[0]
        normed = F.rms_norm(hidden, (self._hidden,), first.input_norm, first.input_eps)
        for index, layer in enumerate(self._layers):
            slab = slabs[index]
            slab.append_column()
            assert mask.shape[1] == slab.end - slab.start, "the mask covers the columns in use"
            qkv = layer.qkv.project(normed).view(hidden.shape[0], -1, self._head_dim)
            attended = attention_block(
                qkv[:rows],
                cos[:rows],
                sin[:rows],
                slab.slab_keys,
                slab.slab_values,
                slab.start,
                mask,
                layer.scaling,
            )
            if carried is not None and kernel_prompts is not None:
                prompts_attended, keys, values = prefill_attention(
                    qkv[rows:], cos[rows:], sin[rows:], kernel_prompts, self._kv_heads, layer.scaling
                )
                carried.cache.update(keys.unsqueeze(0), values.unsqueeze(0), index)
                if index + 1 == len(self._layers):  # past the last cache write: the logits' positions only
                    at_logits = torch.tensor([*range(rows), *(rows + last for last in carried.last)])
                    hidden, prompts_attended = hidden[at_logits], prompts_attended[carried.last]
                attended = torch.cat([attended, prompts_attended])
            normed = add_rms_norm(hidden, layer.o_proj(attended), layer.post_norm, layer.post_eps)
            gate, up = layer.gate_up.project(normed).split(self._intermediate, dim=-1)
            down = layer.down_proj(F.silu(gate) * up)
            normed = add_rms_norm(hidden, down, *self._norm_after(index))
        return cast(torch.Tensor, cast(Any, self._model).lm_head(normed))

    def _norm_after(self, index: int) -> tuple[torch.Tensor, float]:
        """The RMSNorm after layer ``index``: the next layer's input norm, or the model's final one."""
        if index + 1 < len(self._layers):
            after = self._layers[index + 1]
            return after.input_norm, after.input_eps
        return self._inner.norm.weight, self._inner.norm.variance_epsilon

    def _forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: Cache | _LeftPadded,
        attend: _Attend,
        last: list[int] | None = None,
        kernel_prompts: PackedPrompts | None = None,
    ) -> torch.Tensor:
        """Logits at each row's last position, or at ``last`` (positions of the one packed row).

        ``kernel_prompts``: the one packed row's prompts, whose RoPE and attention then run in
        service.engine.prefill_kernels instead of torch's ops and ``attend``."""
        rows, length = tokens.shape
        heads, kv_heads, head_dim = self._heads, self._kv_heads, self._head_dim
        hidden = self._inner.embed_tokens(tokens)  # [rows, length, hidden], a new tensor
        cos, sin = self._inner.rotary_emb(hidden, positions)  # [rows, length, head_dim]
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # over the heads
        half = head_dim // 2
        # The residual add and RMSNorm as one kernel (in place) where the decode step uses it.
        fused = self._decode_kernels and hidden.dtype == torch.float32
        first = self._layers[0]
        normed = F.rms_norm(hidden, (self._hidden,), first.input_norm, first.input_eps)
        for index, layer in enumerate(self._layers):
            qkv = layer.qkv.project(normed).view(rows, length, heads + 2 * kv_heads, head_dim)
            if kernel_prompts is not None:
                attended, keys, values = prefill_attention(
                    qkv[0], cos[0, :, 0], sin[0, :, 0], kernel_prompts, kv_heads, layer.scaling
                )
                cache.update(keys.unsqueeze(0), values.unsqueeze(0), index)
                attended = attended.unsqueeze(0)
            else:
                qk = qkv[:, :, : heads + kv_heads]
                qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin
                keys, values = cache.update(
                    qk[:, :, heads:].transpose(1, 2), qkv[:, :, heads + kv_heads :].transpose(1, 2), index
                )
                attended = attend(qk[:, :, :heads].transpose(1, 2), keys, values, layer.scaling, index)
                attended = attended.transpose(1, 2).reshape(rows, length, heads * head_dim)
            if index + 1 == len(self._layers):
                # Past the last layer's cache write only the logits' positions matter: its o_proj
                # and MLP for those alone (a 46-token prompt: 1 row instead of 46, 3% of a prefill).
                hidden, attended = _at_logits(hidden, last), _at_logits(attended, last)
            hidden, normed = _add_norm(hidden, layer.o_proj(attended), layer.post_norm, layer.post_eps, fused)
            gate, up = layer.gate_up.project(normed).split(self._intermediate, dim=-1)
            down = layer.down_proj(F.silu(gate) * up)
            hidden, normed = _add_norm(hidden, down, *self._norm_after(index), fused)
        return cast(torch.Tensor, cast(Any, self._model).lm_head(normed))


def _add_norm(
    hidden: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float, fused: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``hidden + delta`` and its RMSNorm: with ``fused``, added in place and normed in one kernel."""
    if not fused:
        hidden = hidden + delta
        return hidden, F.rms_norm(hidden, (hidden.shape[-1],), weight, eps)
    flat = hidden.view(-1, hidden.shape[-1])
    return hidden, add_rms_norm(flat, delta.reshape(flat.shape), weight, eps).view(hidden.shape)


def _at_logits(states: torch.Tensor, last: list[int] | None) -> torch.Tensor:
    """``states`` [rows, length, width] at each row's last position, or at ``last`` of the one row."""
    return states[:, -1].contiguous() if last is None else states[0, last]


class _Packed:
    """New prompts packed end to end: their tokens and positions, where each lies, the positions
    their logits are taken at, the left-padded attention mask the batch loop joins them with and
    where their keys and values go (:class:`_LeftPadded` over ``cache``)."""

    def __init__(self, prompts: Sequence[Sequence[int]], cache: Cache, device: torch.device) -> None:
        self.lengths = [len(prompt) for prompt in prompts]
        longest = max(self.lengths)
        self.tokens = torch.tensor([token for prompt in prompts for token in prompt], device=device)
        self.positions = torch.cat([torch.arange(length, device=device) for length in self.lengths])
        ends = list(itertools.accumulate(self.lengths))
        self.starts = [end - length for end, length in zip(ends, self.lengths, strict=True)]
        self.last = [end - 1 for end in ends]
        self.attention_mask = torch.zeros((len(prompts), longest), dtype=torch.long, device=device)
        for row, length in enumerate(self.lengths):
            self.attention_mask[row, longest - length :] = 1
        self.cache = _LeftPadded(cache, self.starts, self.lengths, longest)


class _LeftPadded:
    """Where a packed prefill's keys and values go: split by prompt into ``cache``, each prompt's
    right-aligned in rows padded to the longest (zeros on the left, masked)."""

    def __init__(self, cache: Cache, starts: list[int], lengths: list[int], longest: int) -> None:
        self._cache, self._starts, self._lengths, self._longest = cache, starts, lengths, longest

    def update(
        self, keys: torch.Tensor, values: torch.Tensor, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``keys``, ``values`` [1, kv_heads, packed tokens, head_dim] into the cache; returns them."""
        rows = len(self._lengths)
        if rows == 1:  # one prompt: no padding, so no padded copy
            self._cache.update(keys, values, index)
            return keys, values
        padded_keys = keys.new_zeros((rows, keys.shape[1], self._longest, keys.shape[3]))
        padded_values = torch.zeros_like(padded_keys)
        for row, (start, length) in enumerate(zip(self._starts, self._lengths, strict=True)):
            padded_keys[row, :, self._longest - length :] = keys[0, :, start : start + length]
            padded_values[row, :, self._longest - length :] = values[0, :, start : start + length]
        self._cache.update(padded_keys, padded_values, index)
        return keys, values


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
