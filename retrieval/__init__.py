"""driftrec retrieval layer: data, embeddings, vector index, interest-aware candidate generation.

This package never imports an LLM or LangChain.
"""

from __future__ import annotations

__version__ = "0.1.0"
