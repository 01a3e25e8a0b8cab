"""LangChain adapters: a user's recommendations as a `BaseRetriever`, and the agent as a `StructuredTool`.

Made by `RecommenderAgent.as_retriever` and `RecommenderAgent.as_tool`; both call the agent's own
methods, so they return what the agent returns and refuse what it refuses, with the same errors
(`ConfigError` for a blank id, k outside 1 to `agent.limits.MAX_K` or a bad message,
`UnknownUserError` for a user not in the data). LangChain is imported here, never by `agent.agent`
at import time.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Annotated, Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import StructuredTool
from pydantic import ConfigDict, WithJsonSchema, create_model

from agent.chat.session import ChatSession
from agent.limits import MAX_CHAT_MESSAGE_CHARS, MAX_K, check_count
from agent.types import Recommendation

if TYPE_CHECKING:
    from agent.agent import RecommenderAgent


class RecommendationRetriever(BaseRetriever):
    """One user's top-k recommendations as LangChain `Document`s (retrieval order, or the agent's reranker).

    The query text is ignored: the user's history is the query, so every `invoke` returns the user's
    current list (`RecommenderAgent.recommend(user_id, k, explain=False)`). Each document's
    `page_content` is the item's title; `metadata` holds `item_id`, `score`, `rank` (from 1),
    `categories` (a list) and `user_id`.

    Attributes:
        agent: the agent that recommends.
        user_id: whose recommendations.
        k: documents per call, 1 to `agent.limits.MAX_K`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent: Any
    user_id: str
    k: int = 10

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        rec = self.agent.recommend(self.user_id, self.k, explain=False)
        return recommendation_documents(self.agent, rec)


def recommendation_documents(agent: RecommenderAgent, rec: Recommendation) -> list[Document]:
    """A `Recommendation` as Documents, best first (title as content; id, score, rank, categories as metadata)."""
    docs = []
    for rank, (item_id, title, score) in enumerate(zip(rec.items, rec.titles, rec.scores, strict=True), 1):
        docs.append(Document(page_content=title, metadata={
            "item_id": item_id, "score": score, "rank": rank, "user_id": rec.user,
            "categories": list(agent.catalog[item_id].categories)}))
    return docs


def make_retriever(agent: RecommenderAgent, user_id: str, k: int = 10) -> RecommendationRetriever:
    """The retriever of `RecommenderAgent.as_retriever`; the user and k are checked now, not at the first call.

    Raises:
        ConfigError: a blank or non-string user id, or k outside 1 to `MAX_K`.
        UnknownUserError: the user is not in the agent's dataset.
    """
    check_count(k, "k", MAX_K)
    agent.history(user_id)
    return RecommendationRetriever(agent=agent, user_id=user_id, k=k)


# The schema an LLM sees states the types and bounds; values reach the agent unconverted, so a bad one
# fails with the agent's own ConfigError rather than a pydantic ValidationError.
_UserId = Annotated[Any, WithJsonSchema({"type": "string", "description": "user id as in the data"})]
_Count = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_K,
                                        "description": "number of items (when no message is given)"})]
_Message = Annotated[Any, WithJsonSchema({"type": "string", "maxLength": MAX_CHAT_MESSAGE_CHARS,
                                          "description": "optional chat message, e.g. 'something different' "
                                                         "or 'why the first one?'"})]


TOOL_DESCRIPTION = (
    "Recommend items for a user of the recommender from their history. Without a message, returns the "
    "user's top-k items as JSON (item_id, title, score, categories). With a message, the recommender's "
    "chat answers it (more like a title, something different, why an item was suggested, recent "
    "interests) and returns JSON with intent, text and the items shown.")


def make_tool(agent: RecommenderAgent, name: str = "recommend_items", k: int = 5) -> StructuredTool:
    """The tool of `RecommenderAgent.as_tool`: (user_id, k, message=None) → JSON text.

    Without `message`: `agent.recommend(user_id, k, explain=False)` as
    `{"user", "items": [{"item_id", "title", "score", "categories"}]}`. With `message`:
    `agent.chat(user_id, message, session)` as `{"user", "intent", "text", "items"}`, where `items` are the
    ones the reply shows (at most `AgentConfig.chat_k`; `k` is checked but does not size chat replies).
    The tool keeps one chat session per user, so "more" and "why the second one?" refer to earlier calls.
    Errors are the agent's, raised (the tool does not turn them into text).

    Args:
        agent: the agent.
        name: the tool's name.
        k: the default k.

    Raises:
        ConfigError: the default k is outside 1 to `MAX_K`.
    """
    check_count(k, "k", MAX_K)
    sessions: dict[str, ChatSession] = {}
    lock = threading.Lock()

    def recommend_items(user_id: Any, k: Any = k, message: Any = None) -> str:
        check_count(k, "k", MAX_K)
        if message is None:
            rec = agent.recommend(user_id, k, explain=False)
            return json.dumps({"user": rec.user, "items": _items(agent, rec)}, ensure_ascii=False)
        agent.history(user_id)  # the agent's errors for the id, before a session is made for it
        with lock:
            session = sessions.setdefault(user_id, ChatSession(user=user_id))
        reply = agent.chat(user_id, message, session)
        items = _items(agent, reply.recommendations) if reply.recommendations is not None else []
        return json.dumps({"user": user_id, "intent": reply.intent, "text": reply.text, "items": items},
                          ensure_ascii=False)

    schema = create_model("RecommendArgs", user_id=(_UserId, ...), k=(_Count, k), message=(_Message, None))
    return StructuredTool.from_function(func=recommend_items, name=name, description=TOOL_DESCRIPTION,
                                        args_schema=schema)


def _items(agent: RecommenderAgent, rec: Recommendation) -> list[dict[str, Any]]:
    return [{"item_id": i, "title": t, "score": round(s, 6), "categories": list(agent.catalog[i].categories)}
            for i, t, s in zip(rec.items, rec.titles, rec.scores, strict=True)]
