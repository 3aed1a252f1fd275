"""Embedding CSV parts converted in parallel on Ray Data: one task per part, on every core of every node.

``mmrec_ray.data.ingest`` defines the job (one CSV part -> its Parquet part and summary) and folds the
summaries; this module only spreads the jobs. Each job is one row of a Ray Data dataset with one block per row,
so ``map`` runs one task per part with ``num_cpus`` each (1 by default: pyarrow's own threads are off in a job,
so one task uses one core and tasks fill the cluster). Results are a few numbers per part and stream back as
tasks finish; the vectors never leave the worker that parsed them. On a multi-node cluster the run directory
must be storage every node sees at the same path (NFS, or the staging copy of a URI run directory would not
be): workers write the parts there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict

from mmrec_ray.data.ingest import PartJob


def ray_part_map(num_cpus: float = 1.0, concurrency: int | None = None):
    """A ``PartMap`` for ``ingest_parts``: ``concurrency`` caps the parts converted at once (None: as many as
    the cluster's CPUs allow)."""

    def map_parts(convert: Callable[[PartJob], dict], jobs: Sequence[PartJob]) -> Iterator[dict]:
        if not jobs:
            return
        import ray.data

        def run(row: dict) -> dict:
            return convert(PartJob(**row))

        rows = [asdict(job) for job in jobs]  # plain rows for from_items
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        options = {"num_cpus": num_cpus}
        if concurrency is not None:
            options["concurrency"] = max(1, int(concurrency))
        yield from dataset.map(run, **options).iter_rows()

    return map_parts
