"""Time per training epoch of each model on a PreparedData of the released dataset's shapes (scale 1).

    python -m bench.epoch_time [--prepared RUN_DIR/prepared/tensors] [--models a,b] [--epochs 1] [--device cpu]

Without ``--prepared`` it builds random tensors of scale-1 shapes (N=62,401 PEs, T=10, D=384, V=60,
C=25,515 conversations, S=115,045 sessions, J=24 items; subsets in the released proportions). Wall and CPU (process) seconds are
per epoch including the validation pass; CPU seconds are the steadier number on a shared machine, Table 2 hyperparameters, from the FitResult's epoch count.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_SESSION,
    PreparedData,
    subset_labels,
    test_mask,
)
from mmrec_ray.models import registry
from mmrec_ray.training.runner import fit_models


def synthetic_scale_one(seed: int = 0, n=62401, t=10, d=384, v=60, c=25515, s=115045, j=24) -> PreparedData:
    rng = np.random.default_rng(seed)
    subset = rng.choice(3, n, p=[0.13, 0.55, 0.32])  # conversations only, sessions only, both
    lengths = rng.integers(1, t + 1, n)
    lengths[subset == 2] = np.maximum(lengths[subset == 2], 2)
    steps = np.arange(t)[None, :] < lengths[:, None]
    kinds = np.where(rng.random((n, t)) < 0.3, EVENT_CONVERSATION, EVENT_SESSION)
    kinds[subset == 0] = EVENT_CONVERSATION
    kinds[subset == 1] = EVENT_SESSION
    both = np.flatnonzero(subset == 2)
    kinds[both, 0], kinds[both, 1] = EVENT_CONVERSATION, EVENT_SESSION
    kinds = np.where(steps, kinds, 0).astype(np.int8)
    rows = np.where(kinds == EVENT_CONVERSATION, rng.integers(0, c, (n, t)), rng.integers(0, s, (n, t)))
    rows = np.where(steps, rows, -1).astype(np.int32)
    has_c = (kinds == EVENT_CONVERSATION).any(1)
    has_s = (kinds == EVENT_SESSION).any(1)
    ids = np.arange(1, n + 1, dtype=np.int64)
    targets = np.zeros((n, j), dtype=np.uint8)
    targets[np.arange(n), rng.integers(0, j, n)] = 1
    return PreparedData(
        purchase_event_id=ids,
        user_id=ids,
        item_ids=np.arange(j, dtype=np.int64),
        vocabulary=np.arange(v, dtype=np.int64),
        event_kind=kinds,
        event_row=rows,
        n_events=lengths.astype(np.int16),
        conversation_id=np.arange(c, dtype=np.int64),
        conversation_embedding=rng.normal(0, 0.1, (c, d)).astype(np.float32),
        conversation_keywords=(rng.random((c, v)) < 0.05).astype(np.uint8),
        conversation_n_sentences=np.full(c, 20, dtype=np.int32),
        session_id=np.arange(s, dtype=np.int64),
        session_tags=(rng.random((s, v)) < 0.08).astype(np.uint8),
        pe_conversation_embedding=np.where(has_c[:, None], rng.normal(0, 0.1, (n, d)), 0).astype(np.float32),
        has_conversation=has_c,
        has_session=has_s,
        targets=targets,
        post_filter=np.ones((n, j), dtype=bool),
        is_test=test_mask(ids),
        subset=subset_labels(has_c, has_s),
        meta={"fingerprint": "synthetic-scale-1-shapes"},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepared", default=None)
    parser.add_argument("--models", default=",".join(registry.names()))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args()
    data = PreparedData.load(args.prepared, mmap=False) if args.prepared else synthetic_scale_one()
    training = TrainingConfig(
        max_epochs=args.epochs, patience=1000, device=args.device, num_threads=args.threads
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    store = FeatureStore(data, device=args.device)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device}))
    fitted = {}
    for name in args.models.split(","):
        # dependencies are fitted (and timed) on their own rows first, then reused
        order = [m for m in registry.dependency_order([name]) if (m, 0) not in fitted]
        for model in order:
            started, cpu_started = time.perf_counter(), time.process_time()
            provided = {k: v[0] for k, v in fitted.items()}
            result = fit_models(data, [model], [0], None, training, store=store, provided=provided)
            fitted.update({k: v for k, v in result.items() if k not in fitted})
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            epochs = sum(len(h) for h in result[(model, 0)][1].history.values())
            per_epoch = elapsed / epochs if epochs else None
            cpu_per_epoch = cpu / epochs if epochs else None
            print(
                json.dumps(
                    {
                        "model": model,
                        "seconds": round(elapsed, 2),
                        "epochs": epochs,
                        "seconds_per_epoch": per_epoch and round(per_epoch, 2),
                        "cpu_seconds_per_epoch": cpu_per_epoch and round(cpu_per_epoch, 2),
                        "load_average": round(os.getloadavg()[0], 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
