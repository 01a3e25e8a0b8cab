"""Fine-tuning the LLM ranker on a dataset's training split (`driftrec tune-ranker`).

    examples.py   training and validation examples: the reranker's own prompts, target + sampled negatives
    train.py      LoRA training (peft + transformers) with validation and early stopping
The saved adapter directory (manifest, checksums, base-model and leakage checks) is `agent.llm.adapter`:
the LLM backends and server launchers read it too.
"""
