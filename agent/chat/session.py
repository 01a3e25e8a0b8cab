"""What a conversation remembers across turns: standing constraints, items shown, their explanations, the
turns; saved to and resumed from a JSON file so a CLI or web front end can continue it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.chat.request import Constraints
from agent.types import Explanation, Recommendation
from retrieval.errors import ConfigError
from retrieval.vectors.store import write_file_atomically

SESSION_FORMAT = "driftrec-chat-session/1"
MAX_TURNS_KEPT = 200


class Turn(BaseModel):
    """One message of the conversation; user messages are kept verbatim, as data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["user", "assistant"]
    text: str


class ChatSession(BaseModel):
    """One conversation: a session is never reused across users. Updated in place by `RecommenderAgent.chat`.

    Attributes:
        user: the user the session belongs to.
        constraints: the hard constraints in force.
        shown: item ids already shown, oldest first (not shown again).
        last: the latest list shown ("the second one", "older ones").
        explanations: item id → explanation of each shown item ("why X?" answers from these).
        turns: the conversation so far (the last `MAX_TURNS_KEPT`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    format: Literal["driftrec-chat-session/1"] = "driftrec-chat-session/1"
    user: str = Field(min_length=1)
    constraints: Constraints = Constraints()
    shown: list[str] = []
    last: list[str] = []
    explanations: dict[str, Explanation] = {}
    turns: list[Turn] = []

    def remember(self, rec: Recommendation) -> None:
        """Record a shown list and its explanations."""
        self.last = list(rec.items)
        self.shown.extend(i for i in rec.items if i not in self.shown)
        for exp in rec.explanations:
            self.explanations[exp.item_id] = exp

    def add_turn(self, role: Literal["user", "assistant"], text: str) -> None:
        """Append one message (older turns beyond `MAX_TURNS_KEPT` are dropped)."""
        self.turns.append(Turn(role=role, text=text))
        del self.turns[:-MAX_TURNS_KEPT]

    def save(self, path: str | Path) -> Path:
        """Write the session as JSON, atomically (a crash leaves the old file or the new one).

        Raises:
            ConfigError: the file cannot be written there (a file in the way, no permission).
        """
        path = Path(path)
        try:
            write_file_atomically(path, lambda f: f.write(self.model_dump_json(indent=1)))
        except OSError as exc:
            raise ConfigError(f"cannot save chat session to {path}: {exc}") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> ChatSession:
        """Read a session saved by `save`.

        Raises:
            ConfigError: the file is missing, not JSON, or not a driftrec chat session.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no chat session file at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read chat session {path}: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != SESSION_FORMAT:
            raise ConfigError(f"{path} is not a driftrec chat session (format {SESSION_FORMAT!r})")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"chat session {path} is invalid at {where}: {first['msg']}") from None
