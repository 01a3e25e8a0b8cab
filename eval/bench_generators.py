"""Recall@10/20 of the agent's candidate generators on ml-100k's leave-one-out stages.

Run: `python -m eval.bench_generators [--data ml-100k]`. Each stage's generators see only that stage's
inputs (item-kNN statistics: training events only); the RRF weight of the interest retriever beside
item-kNN is what `retrieval.candidates.registry.INTEREST_WEIGHT` was chosen from (validation Recall@20).
"""

from __future__ import annotations

import argparse
import time

from eval.splits import leave_one_out
from retrieval.candidates.base import CandidateGenerator
from retrieval.candidates.fusion import FusionGenerator
from retrieval.candidates.interest import InterestRetriever
from retrieval.candidates.knn import ItemKNN, KNNGenerator
from retrieval.candidates.popularity import PopularityGenerator
from retrieval.candidates.registry import KNN_HALF_LIFE, KNN_NEIGHBOURS
from retrieval.data.datasets import load_dataset
from retrieval.vectors.build import build_index, default_cache
from retrieval.vectors.embed import make_embedder


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="ml-100k", help="dataset name or path (default ml-100k)")
    args = ap.parse_args(argv)
    ds = load_dataset(args.data)
    split = leave_one_out(ds)
    index = build_index(ds.catalog, make_embedder(), "flat", cache=default_cache(), progress=False)
    knn_model = ItemKNN(split.train, ds.catalog.ids, neighbours=KNN_NEIGHBOURS, half_life=KNN_HALF_LIFE)
    for stage in (split.validation, split.test):
        knn = KNNGenerator(knn_model)
        interest = InterestRetriever(index, popularity=PopularityGenerator(stage.inputs))
        generators: dict[str, CandidateGenerator] = {"itemknn": knn, "interest": interest}
        for w in (0.1, 0.25, 0.5, 1.0):
            generators[f"rrf(itemknn 1, interest {w})"] = FusionGenerator([knn, interest], [1.0, w])
        for name, gen in generators.items():
            start = time.perf_counter()
            lists = gen.generate_batch(stage.inputs, 20)
            hits = [[c.item_id for c in picks] for picks in lists]
            r10, r20 = (sum(t.item in h[:k] for h, t in zip(hits, stage.targets, strict=True)) / len(hits)
                        for k in (10, 20))
            print(f"{stage.name:10s} {name:28s} R@10 {100 * r10:5.2f}  R@20 {100 * r20:5.2f}  "
                  f"({time.perf_counter() - start:.2f}s, {len(hits)} users)")


if __name__ == "__main__":
    main()
