"""The agent's typed answer to one chat message."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from agent.chat.request import ChatIntent, ChatRequest, Constraints
from agent.types import Diagnostics, GroundedText, Recommendation


class ChatReply(BaseModel):
    """The agent's answer to one chat message.

    Attributes:
        text: what to show the user.
        intent: the intent the message was parsed into.
        request: the parsed message (`agent.chat.request.ChatRequest`).
        constraints: the hard constraints in force after this message (`agent.chat.request.Constraints`).
        recommendations: the list shown with this reply, if any.
        interest_shift: the interest-shift text, if the reply includes one.
        diagnostics: parsing, fallbacks, unknown or ambiguous titles, how many items match the constraints.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    intent: ChatIntent
    request: ChatRequest
    constraints: Constraints
    recommendations: Recommendation | None = None
    interest_shift: GroundedText | None = None
    diagnostics: Diagnostics = Diagnostics()
