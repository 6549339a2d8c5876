"""Chat messages to prompt token ids, through the model's own chat template."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from service.engine.base import DEFAULT_TEMPLATE, InvalidPromptError, Message, Prompt, TemplateOptions


async def render_chat(
    tokenizer: Any,
    messages: Sequence[Message],
    template: TemplateOptions = DEFAULT_TEMPLATE,
    tools: Sequence[dict[str, Any]] = (),
) -> Prompt:
    """Apply the chat template and tokenize. Raises :class:`InvalidPromptError`.

    ``tools`` (OpenAI's, ``{"type": "function", "function": {...}}``) go to a template that
    renders them; for one that does not (SmolLM2's), they and the assistant's earlier calls are
    written into the messages, so that the model still sees what it may call and what it called.
    """
    in_template = _renders_tools(tokenizer)
    chat = [_chat_message(message, in_template) for message in messages]
    if tools and not in_template:
        chat = _with_tools_described(chat, tools)
    add_generation_prompt, continue_final_message = template.resolve(chat[-1]["role"])
    options: dict[str, Any] = {"tools": list(tools)} if tools and in_template else {}
    try:
        # Long prompts take milliseconds to template and tokenize: keep that off the event loop.
        token_ids = await asyncio.to_thread(
            tokenizer.apply_chat_template,
            chat,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            tokenize=True,
            return_dict=False,
            **options,
        )
    except Exception as exc:  # templates raise for e.g. roles that do not alternate
        raise InvalidPromptError(f"the model's chat template rejected the messages: {exc}") from exc
    return Prompt(token_ids=list(token_ids))


def _renders_tools(tokenizer: Any) -> bool:
    """Whether the chat template renders tools and calls (those that do read ``tools``)."""
    return "tools" in (tokenizer.chat_template or "")


def _chat_message(message: Message, in_template: bool) -> dict[str, Any]:
    chat: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls and in_template:
        chat["tool_calls"] = list(message.tool_calls)
    elif message.tool_calls and not message.content:
        calls = [
            call["function"] for call in message.tool_calls
        ]  # {"name", "arguments"}, as we generate them
        chat["content"] = json.dumps(calls[0] if len(calls) == 1 else calls)
    if message.tool_call_id is not None:
        chat["tool_call_id"] = message.tool_call_id
    return chat


def _with_tools_described(
    chat: list[dict[str, Any]], tools: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The tools in the system message, for a template that does not render them."""
    described = (
        "You can call these tools:\n"
        + "\n".join(json.dumps(tool["function"]) for tool in tools)
        + '\nTo call one, answer with only {"name": <its name>, "arguments": <its arguments>}.'
    )
    if chat[0]["role"] == "system":
        return [{**chat[0], "content": f"{chat[0]['content']}\n\n{described}"}, *chat[1:]]
    return [{"role": "system", "content": described}, *chat]


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
