"""The text of a constrained tool call (service.openai_tools) as OpenAI's ``tool_calls``.

The grammar makes that text compact JSON in a known shape: for a named function its
arguments; for ``tool_choice: "required"`` ``{"name":"...","arguments":...}``, name first.
So a stream names the call as soon as the name is complete and then sends the arguments as
they are generated, without waiting for the end.
"""

from __future__ import annotations

import json
import re
import uuid

from service.openai_tools import FunctionCall, FunctionCallDelta, ToolCall, ToolCallDelta

_CALL_HEADER = re.compile(r'\{"name":"((?:[^"\\]|\\.)*)","arguments":')


class ToolCallText:
    """One call's text in, its ``tool_calls`` out: as stream deltas (:meth:`feed`, :meth:`finish`)
    or whole (:meth:`whole`). ``tool_choice`` "required" or a named function."""

    def __init__(self, function: str | None) -> None:
        self.id = f"call_{uuid.uuid4().hex[:24]}"
        self._function = function  # named by tool_choice; None: the text names it
        self.name = function
        self._named = False  # the delta with the id and the name has been sent
        self._pending = ""  # text not sent yet: the header until it is complete, then the last character
        self.arguments = ""

    called = True

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """The content (none) and the call deltas ``text`` adds."""
        return "", self.deltas(text)

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        return "", []  # what is held back is the call's closing brace

    def whole(self, text: str) -> tuple[str | None, list[ToolCall] | None]:
        """The message's content (none) and tool_calls, from the whole text."""
        return None, [self.call(text)]

    def deltas(self, text: str) -> list[ToolCallDelta]:
        """The deltas ``text`` adds."""
        self._pending += text
        if self.name is None:
            header = _CALL_HEADER.match(self._pending)
            if header is None:
                return []
            self.name = json.loads(f'"{header.group(1)}"')
            self._pending = self._pending[header.end() :]
        deltas = []
        if not self._named:
            self._named = True
            deltas.append(
                ToolCallDelta(
                    id=self.id, type="function", function=FunctionCallDelta(name=self.name, arguments="")
                )
            )
        # Around the arguments of a call the model names, the last "}" closes the call: held back.
        keep = 1 if self._function is None else 0
        ready = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(ready) :]
        if ready:
            self.arguments += ready
            deltas.append(ToolCallDelta(function=FunctionCallDelta(arguments=ready)))
        return deltas

    def call(self, text: str) -> ToolCall:
        """The whole call, from the whole text."""
        self.deltas(text)
        return ToolCall(id=self.id, function=FunctionCall(name=self.name or "", arguments=self.arguments))


class AutoToolCalls:
    """``tool_choice: "auto"``: the answer is text or calls, and its first character says which
    (the grammar makes text start otherwise): ``{`` one call, ``[`` Mistral's array of calls
    (after its ``[TOOL_CALLS]`` token, which the text leaves out). A single call streams as it
    is generated; an array is sent whole at the end."""

    def __init__(self) -> None:
        self.kind: str | None = None  # "text", "call" or "calls", once the first character is in
        self._pending = ""
        self._call = ToolCallText(None)
        self.calls: list[ToolCall] = []

    @property
    def called(self) -> bool:
        return self.kind in ("call", "calls")

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """The content and the call deltas ``text`` adds."""
        if self.kind is None:
            self._pending += text
            start = self._pending.lstrip()
            if not start:
                return "", []
            self.kind = {"{": "call", "[": "calls"}.get(start[0], "text")
            text, self._pending = (start if self.kind != "text" else self._pending), ""
        if self.kind == "text":
            return text, []
        if self.kind == "call":
            return "", self._call.deltas(text)
        self._pending += text
        return "", []

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        """What is left at the end: an array's calls, whole."""
        if self.kind == "call":
            self.calls = [
                ToolCall(
                    id=self._call.id,
                    function=FunctionCall(name=self._call.name or "", arguments=self._call.arguments),
                )
            ]
        if self.kind != "calls":
            return ("" if self.kind else self._pending), []
        try:
            calls = json.loads(self._pending)
        except ValueError:  # cut where the grammar could not complete it: the text as it is
            self.kind = "text"
            return self._pending, []
        deltas = []
        for index, call in enumerate(calls):
            arguments = json.dumps(call["arguments"], separators=(",", ":"), ensure_ascii=False)
            self.calls.append(
                ToolCall(
                    id=f"call_{uuid.uuid4().hex[:24]}",
                    function=FunctionCall(name=call["name"], arguments=arguments),
                )
            )
            deltas.append(
                ToolCallDelta(
                    index=index,
                    id=self.calls[-1].id,
                    type="function",
                    function=FunctionCallDelta(name=call["name"], arguments=arguments),
                )
            )
        return "", deltas

    def whole(self, text: str) -> tuple[str | None, list[ToolCall] | None]:
        """The message's content and tool_calls, from the whole text."""
        content, _ = self.feed(text)
        rest, _ = self.finish()
        return (None, self.calls) if self.called else (content + rest, None)


AnswerWriter = ToolCallText | AutoToolCalls


def answer_writer(mode: str, function: str | None) -> AnswerWriter | None:
    """How the answer's text becomes content and calls, by ``ToolsRequest.tool_mode()``."""
    if mode == "auto":
        return AutoToolCalls()
    return ToolCallText(function) if mode in ("required", "named") else None
