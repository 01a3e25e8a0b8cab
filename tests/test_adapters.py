"""LangChain adapters: `agent.as_retriever` and `agent.as_tool` return the agent's items and raise its errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from agent.adapters import RecommendationRetriever
from agent.agent import RecommenderAgent
from agent.limits import MAX_CHAT_MESSAGE_CHARS, MAX_K
from retrieval.errors import ConfigError, DriftrecError, UnknownUserError


@pytest.fixture(scope="module")
def agent(ml100k_retrieval_agent: RecommenderAgent) -> RecommenderAgent:
    return ml100k_retrieval_agent


def agent_error(call: Any) -> DriftrecError:
    with pytest.raises(DriftrecError) as info:
        call()
    return info.value


def same_error(expected: Any, got: Any) -> None:
    """Both calls raise, with the same class and the same message."""
    a, b = agent_error(expected), agent_error(got)
    assert (type(a), str(a)) == (type(b), str(b))


@pytest.mark.parametrize("user", ["196", "299"])  # 299 rated a title ml-100k lists twice
def test_retriever_returns_the_agents_items(agent: RecommenderAgent, user: str) -> None:
    retriever = agent.as_retriever(user, k=12)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("anything at all")
    rec = agent.recommend(user, 12, explain=False)
    assert [d.metadata["item_id"] for d in docs] == list(rec.items)
    assert [d.page_content for d in docs] == list(rec.titles)
    assert [d.metadata["score"] for d in docs] == list(rec.scores)
    assert [d.metadata["rank"] for d in docs] == list(range(1, 13))
    assert docs[0].metadata["categories"] == list(agent.catalog[rec.items[0]].categories)
    assert {d.metadata["user_id"] for d in docs} == {user}
    # The query text is ignored: the user's history is the query.
    assert [d.metadata["item_id"] for d in retriever.invoke("science fiction")] == list(rec.items)


def test_retriever_raises_the_agents_errors(agent: RecommenderAgent) -> None:
    same_error(lambda: agent.recommend("nobody", 5, explain=False), lambda: agent.as_retriever("nobody"))
    same_error(lambda: agent.recommend(" ", 5, explain=False), lambda: agent.as_retriever(" "))
    same_error(lambda: agent.recommend("196", 0, explain=False), lambda: agent.as_retriever("196", k=0))
    same_error(lambda: agent.recommend("196", MAX_K + 1, explain=False),
               lambda: agent.as_retriever("196", k=MAX_K + 1))
    # Errors raised at invoke time go through LangChain unchanged.
    late = RecommendationRetriever(agent=agent, user_id="nobody", k=5)
    with pytest.raises(UnknownUserError, match="unknown user 'nobody'"):
        late.invoke("q")


def test_tool_returns_the_agents_items(agent: RecommenderAgent) -> None:
    tool = agent.as_tool()
    assert isinstance(tool, StructuredTool) and tool.name == "recommend_items"
    out = json.loads(tool.invoke({"user_id": "196", "k": 7}))
    rec = agent.recommend("196", 7, explain=False)
    assert out["user"] == "196"
    assert [i["item_id"] for i in out["items"]] == list(rec.items)
    assert [i["title"] for i in out["items"]] == list(rec.titles)
    assert [i["score"] for i in out["items"]] == pytest.approx(rec.scores, abs=1e-6)
    assert len(json.loads(tool.invoke({"user_id": "196"}))["items"]) == 5  # the tool's default k


def test_tool_schema_states_the_caps(agent: RecommenderAgent) -> None:
    params = convert_to_openai_tool(agent.as_tool(k=3))["function"]["parameters"]
    assert params["required"] == ["user_id"]
    assert params["properties"]["user_id"]["type"] == "string"
    assert params["properties"]["k"] | {"description": ""} == {"type": "integer", "minimum": 1, "maximum": MAX_K,
                                                                "default": 3, "description": ""}
    assert params["properties"]["message"]["maxLength"] == MAX_CHAT_MESSAGE_CHARS


def test_tool_raises_the_agents_errors(agent: RecommenderAgent) -> None:
    tool = agent.as_tool()
    for user, k in [("nobody", 5), ("", 5), ("196", 0), ("196", MAX_K + 1), ("196", "5"), ("196", True), (196, 5)]:
        same_error(lambda u=user, n=k: agent.recommend(u, n, explain=False),
                   lambda u=user, n=k: tool.invoke({"user_id": u, "k": n}))
    same_error(lambda: agent.chat("196", "x" * (MAX_CHAT_MESSAGE_CHARS + 1)),
               lambda: tool.invoke({"user_id": "196", "message": "x" * (MAX_CHAT_MESSAGE_CHARS + 1)}))
    same_error(lambda: agent.chat("nobody", "hi"), lambda: tool.invoke({"user_id": "nobody", "message": "hi"}))
    with pytest.raises(ConfigError, match="k must be between 1 and 1,000"):
        agent.as_tool(k=0)


def test_tool_routes_messages_through_chat_with_a_session_per_user(agent: RecommenderAgent) -> None:
    tool = agent.as_tool()
    first = json.loads(tool.invoke({"user_id": "196", "message": "recommend me something"}))
    expected = agent.chat("196", "recommend me something")  # a fresh session
    assert first["intent"] == "recommend" and first["text"] == expected.text
    assert expected.recommendations is not None
    assert [i["item_id"] for i in first["items"]] == list(expected.recommendations.items)
    more = json.loads(tool.invoke({"user_id": "196", "message": "show me more"}))
    assert more["intent"] == "recommend" and more["items"]
    assert not {i["item_id"] for i in more["items"]} & {i["item_id"] for i in first["items"]}
    other = json.loads(tool.invoke({"user_id": "1", "message": "recommend me something"}))
    assert other["user"] == "1" and other["text"].startswith("Here are my picks")  # not user 196's "more"
