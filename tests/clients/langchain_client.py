"""LangChain's ChatOpenAI against the server (run in its own venv: tests/routes/test_langchain.py).

Prints one JSON line: what with_structured_output (its default method) and bind_tools gave.
"""

from __future__ import annotations

import json
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


class City(BaseModel):
    """A city and how many people live there."""

    city: str
    population: int = Field(ge=0, le=100_000_000)


class GetWeather(BaseModel):
    """The weather in a city now."""

    city: str


def main(base_url: str) -> None:
    llm = ChatOpenAI(base_url=base_url, api_key="unused", model="smollm2-135m", temperature=0, max_retries=0)
    city = llm.with_structured_output(City).invoke("What is the capital of France? Answer in JSON.")
    with_tools = llm.bind_tools([GetWeather], tool_choice="any")  # LangChain's "any": OpenAI's "required"
    question = HumanMessage("What is the weather in Paris?")
    called = with_tools.invoke([question])
    call = called.tool_calls[0]
    answer = llm.invoke([question, called, ToolMessage("Sunny, 21 C", tool_call_id=call["id"])])
    print(
        json.dumps(
            {
                "structured": city.model_dump(),
                "tool_call": {"name": call["name"], "args": call["args"]},
                "final": answer.content,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
