"""Settings of the sequential model: architecture and training (saved as config.json beside the weights)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SeqConfig(BaseModel):
    """Architecture and training settings (saved as config.json beside the weights).

    Attributes:
        max_len: newest events a sequence keeps; longer training sequences are cut into windows.
        hidden: model width; also the dimension of query and item vectors.
        blocks: transformer blocks.
        heads: attention heads (hidden must be divisible by heads).
        ffn_mult: feed-forward width as a multiple of hidden.
        dropout: dropout on embeddings, attention and feed-forward.
        use_text: add the projected text vector to each item's id embedding.
        use_time: embedding of the log-bucketed gap to the previous event, from timestamps.
        time_bias: with use_time, also a learned attention bias per log-bucketed gap between the
            query event and each earlier event (TiSASRec-like; costs B·L² work per batch).
        time_buckets: number of log2 buckets for time gaps (bucket 0 = no previous event).
        loss: "ce" = full-softmax cross-entropy over the catalogue (computed at real positions only,
            in chunks of positions); "bce" = BCE with one sampled negative; "sampled" = softmax over the
            target and `negatives` uniform items shared by the batch.
        negatives: uniform negatives per batch for "sampled".
        lr, weight_decay, batch_size: Adam(W) settings.
        epochs: maximum epochs; patience: evaluations without improvement before stopping.
        eval_every: epochs between validation evaluations.
        valid_users: validate on at most this many users (a fixed, seeded subset), None = all.
        seed: seeds torch and the data order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_len: int = Field(200, ge=2)
    hidden: int = Field(64, ge=4)
    blocks: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    ffn_mult: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    use_text: bool = True
    use_time: bool = True
    time_bias: bool = False
    time_buckets: int = Field(32, ge=4)
    loss: Literal["ce", "bce", "sampled"] = "ce"
    negatives: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=1)
    eval_every: int = Field(1, ge=1)
    valid_users: int | None = Field(None, ge=1)
    seed: int = 0
