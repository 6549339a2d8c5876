"""Chat messages to prompt token ids, through the model's own chat template."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from service.engine.base import DEFAULT_TEMPLATE, InvalidPromptError, Message, Prompt, TemplateOptions


async def render_chat(
    tokenizer: Any, messages: Sequence[Message], template: TemplateOptions = DEFAULT_TEMPLATE
) -> Prompt:
    """Apply the chat template and tokenize. Raises :class:`InvalidPromptError`."""
    chat = [{"role": m.role, "content": m.content} for m in messages]
    add_generation_prompt, continue_final_message = template.resolve(chat[-1]["role"])
    try:
        # Long prompts take milliseconds to template and tokenize: keep that off the event loop.
        token_ids = await asyncio.to_thread(
            tokenizer.apply_chat_template,
            chat,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tokenize=True,
            return_dict=False,
        )
    except Exception as exc:  # templates raise for e.g. roles that do not alternate
        raise InvalidPromptError(f"the model's chat template rejected the messages: {exc}") from exc
    return Prompt(token_ids=list(token_ids))


async def tokenize_text(tokenizer: Any, text: str) -> Prompt:
    """``text`` as the model's tokenizer encodes it, with the special tokens it adds (Mistral's BOS)."""
    token_ids = await asyncio.to_thread(tokenizer.encode, text)
    if not token_ids:
        raise InvalidPromptError("the prompt is empty", param="prompt")
    return Prompt(token_ids=list(token_ids))


# Ordinary text is 3-5 characters a token. Longer text than this per token of context is
# counted before it is templated, from a prefix of this many characters per token of context.
_CHARS_PER_TOKEN_BEFORE_COUNTING = 4
_PREFIX_CHARS_PER_TOKEN = 16


async def prompt_tokens_at_least(tokenizer: Any, messages: Sequence[Message], context_length: int) -> int:
    """A lower bound of the tokens ``messages`` make, from a bounded prefix of their text (0 when
    the text is short): a 1 MB prompt is refused after tokenizing ~100 kB, not all of it."""
    text = "\n".join(message.content for message in messages)
    if len(text) <= context_length * _CHARS_PER_TOKEN_BEFORE_COUNTING:
        return 0
    prefix = text[: context_length * _PREFIX_CHARS_PER_TOKEN]
    token_ids = await asyncio.to_thread(tokenizer.encode, prefix, add_special_tokens=False)
    # The cut word and messages run together may each count one token apart: a margin.
    return max(0, len(token_ids) - len(messages) - 1)
