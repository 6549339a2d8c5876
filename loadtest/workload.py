"""What each request asks: its prompt and its output length.

- ``PromptList``: request i sends prompt i of a list (``--prompts``), wrapping around.
- ``Dataset``: rows of a JSONL file (``--dataset``), each a prompt and its own output
  length, as real traffic mixes short and long answers.
- ``SyntheticPrompts``: prompts of about N input tokens (``--input-tokens``), cut from
  the built-in prompts. The client has no tokenizer of the server's, so the length is
  steered by the server's own count: each answer's ``usage.prompt_tokens`` corrects the
  words-per-token estimate for the next prompt, and every record keeps both numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# A first guess for English text under a BPE tokenizer; the first answer replaces it.
_TOKENS_PER_WORD_GUESS = 1.3


@dataclass(frozen=True)
class RequestSpec:
    prompt_index: int
    prompt: str
    max_tokens: int | None = None  # None: the run's --max-tokens
    target_input_tokens: int | None = None


class Workload(Protocol):
    def request(self, index: int) -> RequestSpec: ...

    def observe(self, prompt_words: int, prompt_tokens: int | None) -> None:
        """What the server counted for a prompt of ``prompt_words`` words."""
        ...


@dataclass
class PromptList:
    prompts: list[str]

    def request(self, index: int) -> RequestSpec:
        prompt_index = index % len(self.prompts)
        return RequestSpec(prompt_index, self.prompts[prompt_index])

    def observe(self, prompt_words: int, prompt_tokens: int | None) -> None:
        pass


@dataclass
class Dataset:
    rows: list[RequestSpec]

    @classmethod
    def from_jsonl(cls, path: Path) -> Dataset:
        """Rows ``{"prompt": "...", "output_tokens": 256}`` (``max_tokens`` is taken too; absent: the run's).

        Raises ValueError naming the line of a row that is not one.
        """
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row: Any = json.loads(line)
                prompt = row["prompt"]
                output_tokens = row.get("output_tokens", row.get("max_tokens"))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{number}: not a row with a prompt ({exc})") from exc
            if not isinstance(prompt, str) or not (output_tokens is None or isinstance(output_tokens, int)):
                raise ValueError(f"{path}:{number}: prompt must be text and output_tokens an integer")
            rows.append(RequestSpec(len(rows), prompt, output_tokens))
        if not rows:
            raise ValueError(f"{path} holds no rows")
        return cls(rows)

    def request(self, index: int) -> RequestSpec:
        return self.rows[index % len(self.rows)]

    def observe(self, prompt_words: int, prompt_tokens: int | None) -> None:
        pass


@dataclass
class SyntheticPrompts:
    target_tokens: int
    source_prompts: list[str]
    tokens_per_word: float = _TOKENS_PER_WORD_GUESS
    _words: list[str] = field(default_factory=list, repr=False)
    _seen: tuple[int, int] = (0, 0)  # words sent and tokens the server counted, over all answers

    def __post_init__(self) -> None:
        if self.target_tokens < 1:
            raise ValueError("--input-tokens must be at least 1")
        self._words = " ".join(self.source_prompts).split()

    def request(self, index: int) -> RequestSpec:
        words = max(1, round(self.target_tokens / self.tokens_per_word))
        # Start at a different place for each request: a server's prefix cache must not
        # turn the input length into a cache hit.
        start = (index * 7919) % len(self._words)
        cycle = self._words[start:] + self._words[:start]
        chosen = [cycle[i % len(cycle)] for i in range(words)]
        return RequestSpec(index, " ".join(chosen), target_input_tokens=self.target_tokens)

    def observe(self, prompt_words: int, prompt_tokens: int | None) -> None:
        # Over all answers so far: words tokenize differently, and one prompt's ratio is noisy.
        # The chat template's fixed tokens are folded into the ratio: at a fixed target that
        # still sizes the prompt for the target total.
        if prompt_tokens:
            words, tokens = self._seen
            self._seen = (words + prompt_words, tokens + prompt_tokens)
            self.tokens_per_word = self._seen[1] / self._seen[0]
