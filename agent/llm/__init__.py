"""driftrec's LLM layer: settings, the one typed call path (`LLMClient`), backends chosen by name.

    from agent.llm import LLMSettings, make_client
    client = make_client(LLMSettings(backend="embedded"))

Modules:
    settings    LLMSettings (built at the edge, passed in)
    client      LLMClient.chat → ChatReply, capabilities, token counting, logprob parsing
    backends    BACKENDS registry, make_chat_model / make_client; llamacpp, openai (servers), fake
    json_reply  the JSON object in a reply
    cache       on-disk response cache
    packaged    GGUF models shipped in PyPI packages
    servers     start/stop OpenAI-compatible servers (standard library only)

The names below are imported on first use: `python -m agent.llm.servers` runs inside the vLLM venv,
where LangChain is not installed, and importing this package must not pull it in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.llm.backends import BACKENDS, make_chat_model, make_client
    from agent.llm.client import Capabilities, ChatReply, LLMClient, ToolCall, capabilities, to_messages
    from agent.llm.json_reply import extract_json_object
    from agent.llm.settings import LLMSettings

_EXPORTS = {
    "BACKENDS": "agent.llm.backends",
    "make_chat_model": "agent.llm.backends",
    "make_client": "agent.llm.backends",
    "Capabilities": "agent.llm.client",
    "ChatReply": "agent.llm.client",
    "LLMClient": "agent.llm.client",
    "ToolCall": "agent.llm.client",
    "capabilities": "agent.llm.client",
    "to_messages": "agent.llm.client",
    "extract_json_object": "agent.llm.json_reply",
    "LLMSettings": "agent.llm.settings",
}
__all__ = ["BACKENDS", "Capabilities", "ChatReply", "LLMClient", "LLMSettings", "ToolCall", "capabilities",
           "extract_json_object", "make_chat_model", "make_client", "to_messages"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agent.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
