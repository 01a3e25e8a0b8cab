"""Request and response bodies of the REST API.

Responses reuse the agent's pydantic types (`Recommendation`, `ChatReply`, `Explanation`). Request
fields are typed but not range-checked here: k, ids and message lengths go through `agent.limits`
inside the agent, so the API refuses the same inputs as the CLI with the same one-line messages.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.chat.reply import ChatReply
from agent.limits import MAX_CHAT_MESSAGE_CHARS, MAX_EXPLAINED, MAX_K
from agent.types import Explanation


class RecommendRequest(BaseModel):
    """`POST /recommend`: top-k items for one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(description="user id as in the data", examples=["196"])
    k: int = Field(10, description=f"items to return, 1 to {MAX_K:,} (at most {MAX_EXPLAINED} with explain)")
    explain: bool = Field(False, description="add grounded per-item explanations and the interest-shift text")


class ChatRequest(BaseModel):
    """`POST /chat`: one message in a conversation; leave `session_id` out to start one."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(description="user id as in the data", examples=["196"])
    message: str = Field(description=f"the user's message, at most {MAX_CHAT_MESSAGE_CHARS:,} characters",
                         examples=["recommend me something"])
    session_id: str | None = Field(None, description="the id a previous /chat reply returned; none = new session")


class ChatResponse(BaseModel):
    """The reply and the session it belongs to (send `session_id` back to continue)."""

    model_config = ConfigDict(extra="forbid")

    session_id: str
    reply: ChatReply


class ExplainRequest(BaseModel):
    """`POST /explain`: grounded explanations of given items for one user."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(description="user id as in the data", examples=["196"])
    item_ids: list[str] = Field(description=f"1 to {MAX_EXPLAINED} item ids as in the catalogue", examples=[["50"]])


class ExplainResponse(BaseModel):
    """One explanation per requested item, in request order."""

    model_config = ConfigDict(extra="forbid")

    user: str
    explanations: tuple[Explanation, ...]


class TimelineResponse(BaseModel):
    """A user's interest timeline: the numbers `driftrec timeline --json` prints."""

    model_config = ConfigDict(extra="forbid")

    user: str
    period: str
    forecaster: str
    windows: list[dict[str, Any]] = Field(description="per window: index, start, end, n_items, category "
                                                      "shares, example items")
    drift: list[float] = Field(description="Jensen-Shannon drift between consecutive windows")
    shifts: list[dict[str, Any]] = Field(description="detected shifts: when, from/to categories, strength")
    long_term: list[str]
    short_term: list[str]
    forecast: dict[str, float] = Field(description="forecast category shares of the next window")


class Health(BaseModel):
    """`GET /healthz`: the server is up and what it serves."""

    status: Literal["ok"] = "ok"
    dataset: str
    users: int
    items: int
    llm: str
    sessions: int


class ErrorDetail(BaseModel):
    """A refused or failed request.

    Attributes:
        type: the error class (`UnknownUserError`, `ConfigError`, ...).
        message: the one-line message the CLI prints after "driftrec: error: ".
        exit_code: the exit code the CLI gives the same error.
    """

    type: str
    message: str
    exit_code: int


class ErrorBody(BaseModel):
    """Every error response: `{"error": {"type", "message", "exit_code"}}`."""

    error: ErrorDetail
