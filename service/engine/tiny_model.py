"""The built-in ``tiny-random`` model: a Mistral-architecture model built offline.

It exists so the server, the tests and the CPU demo run with no download. The
weights are random, so its text is gibberish; everything around it (tokenizer,
chat template, generation, streaming) is the real code path a 7B model takes.

The build is deterministic (fixed seeds, fixed training corpus) and goes into the
cache directory on first use (service.engine.model_cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

from service.engine.model_cache import build_once

TINY_MODEL_NAME = "tiny-random"
TINY_MODEL_VERSION = "v1"
# Target size of the trained vocabulary; the small corpus yields a few hundred merges.
VOCAB_SIZE = 1024
CONTEXT_LENGTH = 2048

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
INST_OPEN, INST_CLOSE = "[INST]", "[/INST]"

# Mistral-Instruct style: a system message is prepended to the first user turn,
# user turns are wrapped in [INST] ... [/INST], assistant turns end with </s>.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set system = namespace(text='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% set system.text = system.text + message['content'] + '\\n\\n' %}"
    "{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' + system.text + message['content'] + ' [/INST]' }}"
    "{% set system.text = '' %}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

_CORPUS = """
The quick brown fox jumps over the lazy dog. A model streams tokens to the client as
they are generated, one event at a time, over server-sent events.
How do I reverse a list in Python? Use slicing with a negative step, or call reversed().
Explain the difference between a process and a thread, and when to use asyncio.
def fibonacci(n: int) -> int:
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)
SELECT name, count(*) FROM users GROUP BY name ORDER BY 2 DESC;
for (let i = 0; i < items.length; i++) { console.log(items[i]); }
Write a function that parses a JSON document and returns the keys in sorted order.
What is a memory leak and how do I find one in a long-running service?
Unicode works too: naïve café, déjà vu, 東京, Привет, 😀.
"""


@dataclass(frozen=True)
class RandomMistralRecipe:
    """A Mistral-architecture model with random weights and tiny-random's tokenizer."""

    name: str
    # Bump when the recipe changes, so an old cache is never served as the new model.
    version: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int

    def directory(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.name}-{self.version}"


TINY_RANDOM = RandomMistralRecipe(
    name=TINY_MODEL_NAME,
    version=TINY_MODEL_VERSION,
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def tiny_model_dir(cache_dir: Path) -> Path:
    """Where the tiny model of the current recipe lives under ``cache_dir``."""
    return TINY_RANDOM.directory(cache_dir)


def ensure_tiny_model(cache_dir: Path) -> Path:
    """Return the tiny model's directory, building it first if it is not there."""
    return ensure_built(TINY_RANDOM, cache_dir)


def build_tiny_model(out_dir: Path) -> None:
    build_model(TINY_RANDOM, out_dir)


def ensure_built(recipe: RandomMistralRecipe, cache_dir: Path) -> Path:
    """Return ``recipe``'s directory under ``cache_dir``, building it first if it is not there."""
    return build_once(recipe.directory(cache_dir), lambda staging: build_model(recipe, staging))


def build_model(recipe: RandomMistralRecipe, out_dir: Path) -> None:
    """Train the tokenizer, initialise the model with a fixed seed and save both."""
    tokenizer = train_tokenizer()
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        head_dim=recipe.hidden_size // recipe.num_attention_heads,
        max_position_embeddings=CONTEXT_LENGTH,
        sliding_window=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = MistralForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def train_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[UNK, BOS, EOS, INST_OPEN, INST_CLOSE],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS.splitlines(keepends=True) * 4, trainer=trainer)
    return wrap_tokenizer(backend)


def wrap_tokenizer(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """tiny-random's special tokens, context length and chat template around ``backend``."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=EOS,
        model_max_length=CONTEXT_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
