"""What each request asks: its prompt and its output length.

- ``PromptList``: request i sends prompt i of a list (``--prompts``), wrapping around.
- ``Dataset``: rows of a JSONL file (``--dataset``), each a prompt and its own output
  length, as real traffic mixes short and long answers.
- ``SyntheticPrompts``: prompts of about N input tokens (``--input-tokens``), cut from
  the built-in prompts and sized before the clock starts (loadtest/traffic/sizing.py): counted
  with the model's tokenizer (``--tokenizer``, as guidellm and aiperf do), or from a
  words-per-token ratio measured on the server by calibration requests outside the run.
  Every record keeps the target beside the server's count.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
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
    # The tokens a prompt makes on the server, chat template included (--tokenizer); None: unknown.
    count_tokens: Callable[[str], int] | None = None
    _words: list[str] = field(default_factory=list, repr=False)
    _seen: tuple[int, int] = (0, 0)  # words sent and tokens the server counted, over all answers
    _prepared: dict[int, RequestSpec] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.target_tokens < 1:
            raise ValueError("--input-tokens must be at least 1")
        self._words = " ".join(self.source_prompts).split()

    def request(self, index: int) -> RequestSpec:
        if (prepared := self._prepared.get(index)) is not None:
            return prepared
        return self._sized(index, max(1, round(self.target_tokens / self.tokens_per_word)))

    def prepare(self, indices: Iterable[int]) -> None:
        """Size these requests' prompts now (before the clock), with the tokenizer when there is one;
        later answers no longer change them."""
        for index in indices:
            self._prepared[index] = self._fitted(index) if self.count_tokens else self.request(index)
        self.count_tokens = None  # done with it; and a tokenizer does not pickle (--processes)

    def _sized(self, index: int, words: int) -> RequestSpec:
        # Start at a different place for each request: a server's prefix cache must not
        # turn the input length into a cache hit.
        start = (index * 7919) % len(self._words)
        cycle = self._words[start:] + self._words[:start]
        chosen = [cycle[i % len(cycle)] for i in range(words)]
        return RequestSpec(index, " ".join(chosen), target_input_tokens=self.target_tokens)

    def _fitted(self, index: int) -> RequestSpec:
        """The longest prefix of this request's text that the tokenizer counts within the target:
        a binary search over characters, since one word can be many tokens."""
        assert self.count_tokens is not None
        words = 2 * max(1, round(self.target_tokens / self.tokens_per_word)) + 8
        text = self._sized(index, words).prompt
        while self.count_tokens(text) < self.target_tokens:  # the guess was short: longer text
            words *= 2
            text = self._sized(index, words).prompt
        low, high = 1, len(text)  # the answer lies in [low, high]
        while low < high:
            middle = (low + high + 1) // 2
            if self.count_tokens(text[:middle]) <= self.target_tokens:
                low = middle
            else:
                high = middle - 1
        return RequestSpec(index, text[:low], target_input_tokens=self.target_tokens)

    def observe(self, prompt_words: int, prompt_tokens: int | None) -> None:
        # Over all answers so far: words tokenize differently, and one prompt's ratio is noisy.
        # The chat template's fixed tokens are folded into the ratio: at a fixed target that
        # still sizes the prompt for the target total. Prepared prompts no longer change.
        if prompt_tokens and not self._prepared:
            words, tokens = self._seen
            self._seen = (words + prompt_words, tokens + prompt_tokens)
            self.tokens_per_word = self._seen[1] / self._seen[0]
