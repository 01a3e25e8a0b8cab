"""The candidate-generator interface: typed candidates for users given by their histories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from retrieval.data.model import Event


@dataclass(frozen=True, slots=True)
class Candidate:
    """One recommended item from a generator.

    Attributes:
        item_id: external item id.
        score: generator score (higher is better; comparable within one source).
        source: the generator's name, e.g. "interest" or "popularity".
    """

    item_id: str
    score: float
    source: str


Histories = Mapping[str, Sequence[Event]]
History = Sequence[Event]


class CandidateGenerator:
    """Base class: produce candidates for many users from their histories. One method to implement.

    A generator never looks users up: callers pass each user's history (events, oldest first), so an
    unknown user is the caller's error (the agent raises UnknownUserError) and the harness passes its
    input sequences directly.
    """

    name = "generator"

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        """Top-k unseen candidates per history, best first.

        Args:
            histories: per user, events oldest first (may be empty).
            k: candidates per user.

        Returns:
            len(histories) lists of at most k candidates; items of the history are never returned.
        """
        raise NotImplementedError

    def generate(self, history: History, k: int) -> list[Candidate]:
        """Top-k unseen candidates for one history: `generate_batch([history], k)[0]`."""
        return self.generate_batch([history], k)[0]
