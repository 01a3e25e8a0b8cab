"""Fine-tuning the LLM ranker on a dataset's training split (`driftrec tune-ranker`).

    examples.py   training and validation examples: the reranker's own prompts, target + sampled negatives
    train.py      LoRA training (peft + transformers) with validation and early stopping
    artifact.py   the saved adapter directory: manifest, checksums, base-model and leakage checks
"""
