"""The FastAPI app of `driftrec serve`: one `RecommenderAgent` behind five endpoints.

    POST /recommend   {"user_id": "196", "k": 5, "explain": false}      -> Recommendation
    POST /chat        {"user_id": "196", "message": "...", "session_id"} -> {"session_id", "reply": ChatReply}
    POST /explain     {"user_id": "196", "item_ids": ["50"]}             -> {"user", "explanations"}
    GET  /timeline?user_id=196                                           -> the interest timeline
    GET  /healthz                                                        -> {"status": "ok", ...}

Endpoints are plain functions, so uvicorn runs them on its thread pool, many at a time. What they
share is safe there: the agent's LLM model serialises its calls with a lock per model, its per-user
caches are filled by whole-value assignment, its lazy title tables are built here before serving, and
each chat session is used by one request at a time (`SessionStore`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Query

from agent.agent import RecommenderAgent
from agent.limits import MAX_EXPLAINED, check_count, check_item_ids, check_message
from agent.llm.deadline import budget
from agent.types import Recommendation
from driftrec.server import MAX_BODY_BYTES, MAX_SESSIONS
from driftrec.server.errors import install_error_handlers
from driftrec.server.middleware import BodyLimit
from driftrec.server.models import (
    ChatRequest,
    ChatResponse,
    ErrorBody,
    ExplainRequest,
    ExplainResponse,
    Health,
    RecommendRequest,
    TimelineResponse,
)
from driftrec.server.sessions import SessionStore
from retrieval.errors import UnknownItemError

log = logging.getLogger("driftrec.server")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in ((404, "unknown user, item or chat session"), (413, "request body over the limit"),
                       (422, "a refused input (k, ids, message length, schema)"), (502, "the LLM failed"))}


def create_app(agent: RecommenderAgent, *, llm: str = "none", max_sessions: int = MAX_SESSIONS,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The REST app over `agent`.

    Args:
        agent: the recommender every request uses (shared by all requests).
        llm: the LLM backend's name, reported by /healthz ("none" when there is no LLM).
        max_sessions: chat sessions kept; more evict the least recently used.
        max_body_bytes: largest request body; larger ones get a 413.

    Raises:
        ConfigError: `max_sessions` or `max_body_bytes` is below 1.
    """
    check_count(max_sessions, "max_sessions", None)
    check_count(max_body_bytes, "max_body_bytes", None)
    app = FastAPI(title="driftrec", description="Recommendations that follow how a user's interests drift: "
                  "retrieval, LLM rerank, grounded explanations, chat and the interest timeline.")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    install_error_handlers(app)
    sessions = SessionStore(max_sessions)
    _warm(agent)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health(dataset=agent.dataset.name, users=len(agent.dataset.histories), items=len(agent.catalog),
                      llm=llm, sessions=len(sessions))

    @app.post("/recommend", response_model=Recommendation, responses=_ERRORS)
    def recommend(req: RecommendRequest) -> Recommendation:
        """Top-k items for one user (LLM-reranked when the server has an LLM), optionally explained."""
        started = time.perf_counter()
        rec = agent.recommend(req.user_id, req.k, explain=req.explain)
        log.debug("recommend user=%s k=%d explain=%s in %.3f s", req.user_id, req.k, req.explain,
                  time.perf_counter() - started)
        return rec

    @app.post("/chat", response_model=ChatResponse, responses=_ERRORS)
    def chat(req: ChatRequest) -> ChatResponse:
        """One chat turn; the reply carries the session id to send with the next message."""
        agent.history(req.user_id)  # an unknown user or bad message opens no session
        check_message(req.message)
        session_id, entry = sessions.open(req.session_id, req.user_id)
        with entry.lock:
            reply = agent.chat(req.user_id, req.message, entry.session)
        return ChatResponse(session_id=session_id, reply=reply)

    @app.post("/explain", response_model=ExplainResponse, responses=_ERRORS)
    def explain(req: ExplainRequest) -> ExplainResponse:
        """A grounded explanation of each given item for the user, citing their history."""
        agent.history(req.user_id)  # an unknown user fails before the items are checked
        ids = check_item_ids(req.item_ids, "item_ids")
        check_count(len(ids), "the number of item_ids", MAX_EXPLAINED)
        unknown = [i for i in ids if i not in agent.catalog]
        if unknown:
            raise UnknownItemError(f"unknown item {unknown[0]!r} ({len(agent.catalog):,} items in the catalogue)")
        with budget(agent.config.llm_budget_s):
            explanations = agent.explain_items(req.user_id, ids)
        return ExplainResponse(user=req.user_id, explanations=tuple(explanations))

    @app.get("/timeline", response_model=TimelineResponse, responses=_ERRORS)
    def timeline(user_id: str = Query(description="user id as in the data")) -> TimelineResponse:
        """The user's interest timeline: category shares per window, drift, shifts, forecast."""
        from driftrec.cli.timeline import evolution_json

        history = agent.history(user_id)
        titles = {ev.item: agent.catalog[ev.item].title for ev in history}
        return TimelineResponse.model_validate(evolution_json(agent.evolution(user_id), titles))

    return app


def _warm(agent: RecommenderAgent) -> None:
    """Build the agent's lazy chat vocabulary once, before requests can race to build it."""
    agent.prepare_chat()
