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
