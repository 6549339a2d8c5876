"""OpenAI's structured output and tool calling: ``response_format``, ``tools``, ``tool_choice``.

Every one of them becomes a JSON schema that the engine decodes under (service.engine.grammar),
so the answer parses and matches whatever the model: ``json_object`` is any object,
``json_schema`` its schema, ``tool_choice: "required"`` one call of one of the tools
(``{"name": ..., "arguments": ...}``) and a named function its ``parameters``. The answer's
text then becomes ``tool_calls`` (service.tool_calls).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field("response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="The JSON schema (default: any object)."
    )
    strict: bool | None = Field(
        None, description="Accepted; the schema is always enforced (constrained decoding)."
    )


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema: {'name': ..., 'schema': {...}}")
        return self

    def answer_schema(self) -> dict[str, Any] | None:
        """The schema the answer must match; None for plain text."""
        if self.type == "json_object":
            return _ANY_OBJECT
        if self.type == "json_schema" and self.json_schema is not None:
            return self.json_schema.schema_ if self.json_schema.schema_ is not None else _ANY_OBJECT
        return None


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON schema (default: no arguments).")
    strict: bool | None = Field(None, description="Accepted; the parameters are always enforced.")

    def parameters_schema(self) -> dict[str, Any]:
        if self.parameters is None:
            return {"type": "object", "properties": {}, "additionalProperties": False}
        return self.parameters


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ToolsRequest(BaseModel):
    """The chat request's fields for structured output and tools, checked together."""

    model_config = ConfigDict(extra="ignore")

    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: ToolChoice | None = Field(
        None,
        validate_default=True,
        description="'auto' (the default with tools): text or a call, the model decides; 'required' or a "
        "named function: a call; 'none': text. A call is always valid (constrained decoding, any model).",
    )
    parallel_tool_calls: bool | None = Field(None, description="Accepted: an answer makes one call.")
    response_format: ResponseFormat | None = None

    @field_validator("tool_choice")
    @classmethod
    def _choice_fits_the_tools(cls, choice: ToolChoice | None, info: ValidationInfo) -> ToolChoice | None:
        names = [tool.function.name for tool in info.data.get("tools") or []]
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"it names {choice.function.name!r}, which is not among the tools {names}")
        if choice == "required" and not names:
            raise ValueError("'required' needs tools")
        return choice

    @field_validator("response_format")
    @classmethod
    def _one_shape(
        cls, response_format: ResponseFormat | None, info: ValidationInfo
    ) -> ResponseFormat | None:
        calls = info.data.get("tools") and info.data.get("tool_choice") != "none"
        if calls and response_format is not None and response_format.type != "text":
            raise ValueError("a tool call and a JSON response_format cannot both shape the answer: send one")
        return response_format

    def tool_mode(self) -> Literal["none", "auto", "required", "named"]:
        """How the answer relates to the tools: none (text), auto (text or a call), a call."""
        if not self.tools or self.tool_choice == "none":
            return "none"
        if self.tool_choice in (None, "auto"):
            return "auto"
        return "required" if self.tool_choice == "required" else "named"

    def called_function(self) -> str | None:
        """The function a named tool_choice calls; None for 'required' (the model picks)."""
        return self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else None

    def answer_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer is decoded under (with "auto": or free text), or None."""
        mode = self.tool_mode()
        if mode == "none":
            return self.response_format.answer_schema() if self.response_format else None
        tools = self.tools or []
        if mode == "named":
            return next(
                tool.function for tool in tools if tool.function.name == self.called_function()
            ).parameters_schema()
        calls = [_call_schema(tool.function) for tool in tools]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}

    def schema_text(self) -> str | None:
        schema = self.answer_schema()
        return None if schema is None else json.dumps(closed_objects(schema))


# Values that are data, not schemas: left as they are.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def closed_objects(schema: Any) -> Any:
    """``schema`` with every object that names its properties and says nothing of others closed
    (``additionalProperties: false``): the answer has the keys the client listed, which is what
    OpenAI's strict mode asks clients to write, and what keeps a small model from inventing keys
    until ``max_tokens``. A schema that sets ``additionalProperties`` keeps its own."""
    if isinstance(schema, list):
        return [closed_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: value if key in _DATA_KEYWORDS else closed_objects(value) for key, value in schema.items()}
    if "properties" in closed and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    return closed


def _call_schema(function: FunctionDefinition) -> dict[str, Any]:
    """One call of ``function``, name first (so a stream can name the call before its arguments)."""
    return {
        "type": "object",
        "properties": {"name": {"const": function.name}, "arguments": function.parameters_schema()},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    index: int = 0
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class CalledFunction(BaseModel):
    name: str
    arguments: str | dict[str, Any] = Field("{}", description="JSON text, as OpenAI sends it (or an object).")


class HistoryToolCall(BaseModel):
    """A call in an earlier assistant message of the conversation."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: CalledFunction


def template_tool_calls(calls: list[HistoryToolCall] | None) -> tuple[dict[str, Any], ...]:
    """An assistant message's ``tool_calls`` as chat templates take them: arguments as an object
    (OpenAI sends them as JSON text)."""
    converted = []
    for call in calls or []:
        arguments = call.function.arguments
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):  # not JSON: the template gets the text as it came
                arguments = json.loads(arguments)
        function = {"name": call.function.name, "arguments": arguments}
        converted.append({"type": "function", "id": call.id, "function": function})
    return tuple(converted)
