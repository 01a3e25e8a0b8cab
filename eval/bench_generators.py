"""Recall@10/20 and NDCG@10 of the agent's candidate generators on a dataset's leave-one-out stages.

Run: `python -m eval.bench_generators [--data ml-100k]`. The generators are built from the split's
training histories only, exactly as `retrieval.candidates.registry.make_generator` builds them for the
agent: the default `hybrid` chooses its fusion on the last training event of a seeded sample of
`TUNING_USERS` users (`retrieval.candidates.fusion.tune_on_holdout`), so neither stage below is seen by
its tuning. Prints the chosen fusion, its build time, and one row per stage and generator.
"""

from __future__ import annotations

import argparse
import time

from eval.splits import leave_one_out
from retrieval.candidates.fusion import fused_metric
from retrieval.candidates.registry import make_generator
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
    generators = {}
    for name in ("itemknn", "interest", "ease", "hybrid"):
        start = time.perf_counter()
        generators[name] = make_generator(name, index, split.train, ds.catalog.ids)
        print(f"built {name} in {time.perf_counter() - start:.1f} s: {generators[name]!r}")
    for stage in (split.validation, split.test):
        for name, gen in generators.items():
            start = time.perf_counter()
            lists = [gen.generate_batch(stage.inputs, 20)]
            r10, r20 = (fused_metric(lists, stage.target_items, (1.0,), 60.0, "recall", k) for k in (10, 20))
            n10 = fused_metric(lists, stage.target_items, (1.0,), 60.0, "ndcg", 10)
            print(f"{stage.name:10s} {name:10s} R@10 {100 * r10:5.2f}  R@20 {100 * r20:5.2f}  N@10 {100 * n10:5.2f}  "
                  f"({time.perf_counter() - start:.2f}s, {len(stage)} users)")


if __name__ == "__main__":
    main()
