"""Embedding CSV ingest (``mmrec prepare`` on the release's embedding parts): per-core throughput against the
format's limit and the reference code's reader, scaling in workers, and a full rehearsal at release-like width.

Data: ``mmrec generate --no-text --embedding-dim 768 --float-text release`` (full float64 text, ~1.9 GB parts,
as the release's 107 parts of 1.96 GB). Rows:

1. per core, one part, one thread each, side by side in this process (MB of CSV per CPU-second, best of
   REPEATS runs each):
   ``convert_part`` (parse + validate + Parquet part + per-conversation sums) against
   (a) ``pyarrow.csv.read_csv`` alone with default types, (a') the same parse with the column types declared
   and convert_part's block size — the parse alone, the limit for a pyarrow reader — and
   (b) ``pandas.read_csv`` + ``pd.concat``, what the reference scripts do;
2. workers: the same parts converted by 1 and by 2 Ray Data tasks (wall time);
3. the rehearsal: ``mmrec prepare`` on the whole folder (``--ingest-workers auto``) in a subprocess — wall time
   and peak RSS of the driver and of all its processes together (Ray's included), sampled every 0.2 s;
   and the extrapolation to the release (210 GB) on a 16-core node and on 4 such nodes, from the measured
   per-core rate (linear in cores: parts are independent) plus the measured fixed part of the stage.

``python -m bench.ingest --data DIR [--parts N] [--skip-rehearsal]``; DIR is made if missing (scale 1).
``--parsers-only 300000000``: only which parser is the limit (pyarrow inferred / typed, pandas, and polars when
installed), one thread each, on the first 300 MB of the first part.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import make_row, print_rows, this_command, update_readme, write_results

RELEASE_BYTES = 107 * 1_964_700_000


def _device() -> str:
    import platform

    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def _cpu_rate(function, size: int) -> tuple[float, float]:
    """(MB per CPU-second, MB per wall second) of ``function`` over ``size`` bytes."""
    cpu, wall = time.process_time(), time.perf_counter()
    function()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return size / 1e6 / max(cpu, 1e-9), size / 1e6 / max(wall, 1e-9)  # a tiny test sample can take 0 ticks


# Every per-core rate is the best of this many runs, ours and the baselines alike: the machine is noisy.
REPEATS = 2


def _best_rate(function, size: int) -> tuple[float, float]:
    """The best (by CPU rate) of REPEATS ``_cpu_rate`` runs."""
    return max((_cpu_rate(function, size) for _ in range(REPEATS)), key=lambda rate: rate[0])


def _drain(part: Path, reader: str) -> None:
    from mmrec_ray.data.embedding_csv import DEFAULT_CHUNK_BYTES, iter_embedding_chunks

    for _ in iter_embedding_chunks([part], DEFAULT_CHUNK_BYTES, use_threads=False, reader=reader):
        pass


def warm_kernel(part: Path) -> float:
    """CPU seconds of what a fresh process pays once before the kernel runs (numba import, loading the cached
    machine code, or compiling it on the very first run), so per-core rates are steady-state rates."""
    started = time.process_time()
    head = part.with_name("_warm_" + part.name)
    with open(part, "rb") as source:
        head.write_bytes(source.readline() + source.readline())
    _drain(head, "auto")
    head.unlink()
    return time.process_time() - started


def parsers(part: Path, scratch: Path, size: int) -> dict:
    """MB of CSV per CPU-second of each available parser, one thread, on the first ``size`` bytes of ``part``
    (cut at a line end): which parser is the limit for this format. polars is measured when it is importable
    (it is not a dependency of the project)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from mmrec_ray.data.embedding_csv import DEFAULT_CHUNK_BYTES, embedding_columns

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with open(part, "rb") as source:
        head = source.read(size)
    sample = scratch / "parsers_sample.csv"
    sample.write_bytes(head[: head.rindex(b"\n") + 1])
    size = sample.stat().st_size
    header, columns = embedding_columns(sample)
    keys = header[: len(header) - len(columns)]
    declared = {name: pa.string() for name in keys} | {name: pa.float32() for name in columns}
    rates = {
        "pyarrow, types inferred": _best_rate(
            lambda: pacsv.read_csv(sample, read_options=pacsv.ReadOptions(use_threads=False)), size
        )[0],
        "pyarrow, float32 declared, convert_part's blocks": _best_rate(
            lambda: pacsv.read_csv(
                sample,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=DEFAULT_CHUNK_BYTES),
                convert_options=pacsv.ConvertOptions(column_types=declared),
            ),
            size,
        )[0],
        "pandas.read_csv": _best_rate(lambda: pd.read_csv(sample), size)[0],
    }
    warm_kernel(sample)
    for reader, name in (("auto", "ours: compiled kernel"), ("arrow", "ours: pyarrow reader")):
        rates[f"{name} (iter_embedding_chunks, parse + checks)"] = _best_rate(
            lambda reader=reader: _drain(sample, reader), size
        )[0]
    try:
        os.environ.setdefault("POLARS_MAX_THREADS", "1")  # read when polars is imported
        import polars as pl

        schema = {name: pl.String for name in keys} | {name: pl.Float32 for name in columns}
        rates[f"polars {pl.__version__} read_csv, schema given"] = _best_rate(
            lambda: pl.read_csv(sample, schema=schema), size
        )[0]
    except ImportError:
        pass
    sample.unlink()
    return rates


def _pandas_version() -> str:
    import pandas

    return pandas.__version__


def _reference_pandas_rate(python: str, part: Path, size: int) -> tuple[float, float]:
    """``pandas.read_csv`` + ``pd.concat`` of ``part`` by another interpreter: the reference scripts' own
    environment (pandas 1.5.3, numpy 1.23.5), whose pandas parses on one thread where today's uses two."""
    code = (
        "import sys, time, pandas as pd; c, w = time.process_time(), time.perf_counter(); "
        "pd.concat([pd.read_csv(sys.argv[1])], ignore_index=True); "
        "print(time.process_time() - c, time.perf_counter() - w, pd.__version__)"
    )
    runs = [
        subprocess.run(
            [python, "-c", code, str(part)], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(REPEATS)
    ]
    out = min(runs, key=lambda run: float(run[0]))
    cpu, wall = float(out[0]), float(out[1])
    print(f"reference pandas {out[2]}: {size / 1e6 / cpu:.0f} MB/cpu-s", flush=True)
    return size / 1e6 / cpu, size / 1e6 / wall


def per_core(part: Path, scratch: Path, reference_python: str | None = None) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from mmrec_ray.data.embedding_csv import DEFAULT_CHUNK_BYTES, embedding_columns
    from mmrec_ray.data.ingest import PartJob, convert_part

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    size = part.stat().st_size
    dim = len(embedding_columns(part)[1])
    rates = {}
    rates["pyarrow"] = _best_rate(
        lambda: pacsv.read_csv(part, read_options=pacsv.ReadOptions(use_threads=False)), size
    )
    # The same parse configured as convert_part's reader: float32 columns declared, ids and speaker as strings,
    # the same block size. Inferring types (the row above) costs pyarrow most of its time on 768 float columns.
    header, columns = embedding_columns(part)
    declared = {name: pa.string() for name in header[: len(header) - len(columns)]}
    declared.update({name: pa.float32() for name in columns})
    rates["pyarrow_typed"] = _best_rate(
        lambda: pacsv.read_csv(
            part,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=DEFAULT_CHUNK_BYTES),
            convert_options=pacsv.ConvertOptions(column_types=declared),
        ),
        size,
    )
    rates["pandas"] = _best_rate(lambda: pd.concat([pd.read_csv(part)], ignore_index=True), size)
    if reference_python:
        rates["pandas_reference"] = _reference_pandas_rate(reference_python, part, size)

    def ours(reader: str) -> None:
        out = scratch / "per_core"
        shutil.rmtree(out, ignore_errors=True)
        convert_part(PartJob(1, str(part), str(out), dim, DEFAULT_CHUNK_BYTES, threads=False, reader=reader))

    warm_s = warm_kernel(part)
    rates["ours"] = _best_rate(lambda: ours("auto"), size)
    rates["ours_arrow_reader"] = _best_rate(lambda: ours("arrow"), size)
    result = {k: {"mb_per_cpu_s": v[0], "mb_per_s": v[1]} for k, v in rates.items()}
    result["kernel_warm_up_cpu_s"] = warm_s
    return result


def workers(parts: list[Path], scratch: Path) -> dict:
    """Wall seconds to convert ``parts`` with 1 and 2 Ray Data tasks at a time (Ray started once, excluded)."""
    import numpy as np

    from mmrec_ray.data.embedding_csv import DEFAULT_CHUNK_BYTES, embedding_columns
    from mmrec_ray.data.ingest import ingest_parts
    from mmrec_ray.pipeline.ingest import ray_part_map
    from mmrec_ray.pipeline.ray_env import init_ray, shutdown_ray

    dim = len(embedding_columns(parts[0])[1])
    started = init_ray(address="local", num_cpus=os.cpu_count())
    out = {}
    try:
        for count in (1, 2):
            folder = scratch / f"workers_{count}"
            shutil.rmtree(folder, ignore_errors=True)
            _, report = ingest_parts(
                parts,
                folder,
                np.zeros(0, dtype=np.int64),
                dim,
                DEFAULT_CHUNK_BYTES,
                map_parts=ray_part_map(concurrency=count),
                threads=False,
                log=lambda _: None,
            )
            out[count] = report["seconds"]
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutdown_ray(started)
    return out


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux /proc; Ray's raylet and workers descend from the driver)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rehearsal(data: Path, scratch: Path) -> dict:
    run = scratch / "rehearsal"
    shutil.rmtree(run, ignore_errors=True)
    command = [sys.executable, "-m", "mmrec_ray.cli", "prepare", "--data", str(data), "--run-dir", str(run)]
    started = time.perf_counter()
    log = scratch / "rehearsal.log"
    with open(log, "w") as handle:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    peak_driver = peak_total = 0
    while process.poll() is None:
        rss = [_rss(pid) for pid in _descendants(process.pid)]
        peak_driver = max(peak_driver, rss[0])
        peak_total = max(peak_total, sum(rss))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    output = log.read_text()
    if process.returncode != 0:
        raise SystemExit(f"rehearsal failed ({process.returncode}):\n{output[-3000:]}")
    meta = json.loads((run / "prepared" / "tensors" / "meta.json").read_text())
    ingest = meta["embedding_source"]["ingest"]
    shutil.rmtree(run, ignore_errors=True)
    return {
        "wall_s": wall,
        "convert_s": ingest["seconds"],
        "bytes": ingest["converted_bytes"],
        "parts": ingest["parts"],
        "peak_driver_gib": peak_driver / 2**30,
        "peak_total_gib": peak_total / 2**30,
        "log_tail": output.strip().splitlines()[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="release-shaped folder (made at scale 1 if missing)"
    )
    parser.add_argument("--parts", type=int, default=4, help="parts for the 1-vs-2-worker row")
    parser.add_argument("--skip-rehearsal", action="store_true")
    parser.add_argument(
        "--parsers-only",
        type=int,
        default=0,
        metavar="BYTES",
        help="only compare the parsers (one thread each) on the first BYTES of the first part, and exit",
    )
    parser.add_argument(
        "--scratch", type=Path, default=None, help="where outputs go (default: a temp folder)"
    )
    parser.add_argument(
        "--reference-python",
        default=None,
        metavar="PYTHON",
        help="an interpreter with the reference scripts' pandas (1.5.3): adds its read_csv+concat as a baseline",
    )
    parser.add_argument("--results", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args(argv)

    from mmrec_ray.data.embedding_csv import find_embedding_parts

    if args.parsers_only:
        scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
        for name, rate in parsers(find_embedding_parts(args.data)[0], scratch, args.parsers_only).items():
            print(f"{rate:8.0f} MB/cpu-s  {name}")
        return 0

    if not find_embedding_parts(args.data):
        from mmrec_ray.data.synthetic_files import generate

        generate(args.data, scale=1.0, seed=0, text=False, embedding_dim=768, float_text="release")
    parts = find_embedding_parts(args.data)
    total = sum(p.stat().st_size for p in parts)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    device, command = _device(), this_command()
    rows = []

    rates = per_core(parts[0], scratch, args.reference_python)
    print(json.dumps(rates), flush=True)
    for baseline, label in (
        ("pyarrow", "pyarrow.csv.read_csv (parse only, types inferred)"),
        ("pyarrow_typed", "pyarrow.csv.read_csv (parse only, float32 declared, same blocks)"),
        ("pandas", f"pandas {_pandas_version()} read_csv+concat (this environment)"),
        ("ours_arrow_reader", "convert_part with pyarrow's reader (reader=arrow)"),
        ("pandas_reference", "pandas 1.5.3 read_csv+concat (the reference scripts' environment)"),
    ):
        if baseline not in rates:
            continue
        rows.append(
            make_row(
                "ingest: one part per core, convert_part",
                "CSV MB/cpu-s",
                rates["ours"]["mb_per_cpu_s"],
                label,
                rates[baseline]["mb_per_cpu_s"],
                device,
                command,
            )
        )

    chosen = parts[: max(2, args.parts)]
    seconds = workers(chosen, scratch)
    chosen_bytes = sum(p.stat().st_size for p in chosen)
    rows.append(
        make_row(
            f"ingest: {len(chosen)} parts ({chosen_bytes / 1e9:.1f} GB), 2 Ray Data tasks",
            "wall s",
            seconds[2],
            "1 Ray Data task",
            seconds[1],
            device,
            command,
        )
    )

    if not args.skip_rehearsal:
        result = rehearsal(args.data, scratch)
        print(json.dumps(result), flush=True)
        rows.append(
            make_row(
                f"ingest rehearsal: mmrec prepare, {result['parts']} parts, {total / 1e9:.1f} GB, 768 columns",
                "wall s",
                result["wall_s"],
                "pandas.read_csv+concat (same bytes, from row 1)",
                total / 1e6 / rates["pandas"]["mb_per_s"],
                device,
                command,
            )
        )
        rows.append(
            make_row(
                "ingest rehearsal: peak RSS, driver + Ray processes",
                "GiB",
                result["peak_total_gib"],
                "limit",
                4.0,
                device,
                command,
            )
        )
        per_core_rate = result["bytes"] / 1e6 / result["convert_s"] / min(os.cpu_count(), len(parts))
        fixed = result["wall_s"] - result["convert_s"]
        extrapolation = {
            "per_core_mb_s": per_core_rate,
            "fixed_s": fixed,
            "release_16_cores_min": (RELEASE_BYTES / 1e6 / (16 * per_core_rate) + fixed) / 60,
            "release_4x16_cores_min": (RELEASE_BYTES / 1e6 / (64 * per_core_rate) + fixed) / 60,
            "rehearsal": result,
            "per_core": rates,
            "workers_wall_s": seconds,
        }
        target = (
            (args.results or Path(__file__).resolve().parent / "results") / "ingest" / "extrapolation.json"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(extrapolation, indent=1) + "\n")
        print(json.dumps(extrapolation, indent=1), flush=True)

    print_rows(rows)
    if args.results is None:
        write_results("ingest_cpu", rows)
        update_readme()
    else:
        write_results("ingest_cpu", rows, args.results)
        update_readme(directory=args.results)
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
