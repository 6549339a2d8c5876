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
    or whole (:meth:`call`)."""

    def __init__(self, function: str | None) -> None:
        self.id = f"call_{uuid.uuid4().hex[:24]}"
        self._function = function  # named by tool_choice; None: the text names it
        self.name = function
        self._named = False  # the delta with the id and the name has been sent
        self._pending = ""  # text not sent yet: the header until it is complete, then the last character
        self.arguments = ""

    def feed(self, text: str) -> list[ToolCallDelta]:
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
        self.feed(text)
        return ToolCall(id=self.id, function=FunctionCall(name=self.name or "", arguments=self.arguments))
