"""How cost grows with the data: ``generate`` (no text), ``prepare``, one training epoch and ``aggregate`` at
several scales, each step in its own subprocess so that its wall time and peak resident memory are its own.
Peak memory is the child's ``VmHWM`` read from ``/proc/self/status`` as it exits: Linux carries a process's
``ru_maxrss`` across ``exec``, so ``os.wait4`` of a child forked from this (large) benchmark process would report
at least the parent's size (``wait4`` is the fallback where ``/proc`` is missing).

Rows: ``seconds @ scale s`` against a linear extrapolation from the smallest scale (``t(s0) * s / s0``; ratio > 1
= grows slower than linear) and ``peak RSS MiB @ scale s`` against the machine's memory (ratio = headroom).
The epoch is Keyword's (a GRU over every PE's events: the model whose cost tracks the data most directly) on
the project's path. ``aggregate`` evaluates the predictions of Popular and Conversation (1 epoch), five seeds
each, fitted (untimed) just before — the statistics (McNemar, ANOVA, bootstrap) and tables over them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import make_row

STEPS = ("generate", "prepare", "epoch", "aggregate")
MACHINE_MEMORY_MIB = 24 * 1024


# Runs ``python -m module args`` / ``python -c code args`` and, at exit, writes its own VmHWM (kB) to a file.
_PEAK_WRAPPER = """
import atexit, os, runpy, sys
def _report_peak():
    try:
        with open('/proc/self/status') as status:
            peak = next(line for line in status if line.startswith('VmHWM:')).split()[1]
    except OSError:
        return
    with open(os.environ['MMREC_BENCH_PEAK_FILE'], 'w') as out:
        out.write(peak)
atexit.register(_report_peak)
mode, target, *rest = sys.argv[1:]
if mode == '-m':
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name='__main__', alter_sys=True)
else:
    sys.argv = ['-c', *rest]
    exec(compile(target, '<bench>', 'exec'), {'__name__': '__main__'})
"""


def run_measured(argv: list[str], env: dict | None = None, log=print) -> tuple[float, float]:
    """Run ``argv``; (wall seconds, peak RSS MiB of that process). Raises with its output on failure."""
    descriptor, name = tempfile.mkstemp(prefix="mmrec-bench-peak-")  # empty until the child writes it
    os.close(descriptor)
    peak_file = Path(name)
    if argv[0] == sys.executable and len(argv) > 2 and argv[1] in ("-m", "-c"):
        argv = [sys.executable, "-c", _PEAK_WRAPPER, *argv[1:]]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {}), "MMREC_BENCH_PEAK_FILE": str(peak_file)},
    )
    output = b""
    assert process.stdout is not None
    for chunk in iter(lambda: process.stdout.read(65536), b""):
        output += chunk
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    reported = peak_file.read_text().strip()
    peak_file.unlink(missing_ok=True)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}):\n{output.decode()[-3000:]}")
    return seconds, (int(reported) if reported else usage.ru_maxrss) / 1024.0  # Linux: kilobytes


_EPOCH = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
from bench.train import TimedFeatureStore, time_one_epoch
from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.models.params import default_params
data = PreparedData.load(sys.argv[1], mmap=False)
store = TimedFeatureStore.wrap(FeatureStore(data))
timing, _ = time_one_epoch("keyword", store, {}, TrainingConfig(max_epochs=1, patience=1000, device="cpu"),
                           default_params("keyword"))
print(timing.seconds)
"""

_FIT = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.training.runner import fit_models, predict_test, predictions_path, write_test_predictions
run = sys.argv[1]
data = PreparedData.load(run + "/prepared/tensors", mmap=False)
store = FeatureStore(data)
training = TrainingConfig(max_epochs=1, patience=1000, device="cpu")
fitted = fit_models(data, ["popular", "conversation"], [0, 1, 2, 3, 4], None, training, store=store)
for (name, seed), (model, _) in fitted.items():
    write_test_predictions(predictions_path(run, name, seed), predict_test(model, store, data))
"""

_AGGREGATE = """
import sys
from mmrec_ray.evaluation.aggregate import aggregate
aggregate(sys.argv[1], reference="conversation", echo=None)
"""


def measure_scale(scale: float, workdir: Path, threads: int = 1, embedding_dim: int = 64, log=print) -> dict:
    """{step: (seconds, peak MiB)} for one scale; the run directory stays in ``workdir`` (reused by train)."""
    python = sys.executable
    data_dir, run_dir = workdir / f"data_{scale:g}", workdir / f"run_{scale:g}"
    env = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cli = [python, "-m", "mmrec_ray.cli"]
    out = {}
    out["generate"] = run_measured(
        cli + ["generate", "--out", str(data_dir), "--scale", f"{scale:g}", "--no-text",
               "--embedding-dim", str(embedding_dim)],
        env,
    )  # fmt: skip
    out["prepare"] = run_measured(
        cli + ["prepare", "--data", str(data_dir), "--run-dir", str(run_dir), "--force"], env
    )
    tensors = str(run_dir / "prepared" / "tensors")
    seconds, peak = run_measured([python, "-c", _EPOCH, tensors, str(threads)], env)
    out["epoch"] = (seconds, peak)
    run_measured([python, "-c", _FIT, str(run_dir), str(threads)], env)
    out["aggregate"] = run_measured([python, "-c", _AGGREGATE, str(run_dir)], env)
    log(f"scale {scale:g}: " + ", ".join(f"{step} {s:.1f}s / {m:.0f} MiB" for step, (s, m) in out.items()))
    return out


def scale_rows(measured: dict[float, dict], device_label: str, command: str) -> list[dict]:
    """Rows from ``{scale: {step: (seconds, peak MiB)}}`` (see the module docstring)."""
    scales = sorted(measured)
    smallest = scales[0]
    rows = []
    for step in STEPS:
        base_seconds = measured[smallest][step][0]
        for scale in scales[1:]:
            factor = scale / smallest
            rows.append(
                make_row(
                    f"scale/{step}",
                    f"seconds @ scale {scale:g}",
                    measured[scale][step][0],
                    f"linear from scale {smallest:g} ({base_seconds:.2f}s x {factor:g})",
                    base_seconds * factor,
                    device_label,
                    command,
                )
            )
        for scale in scales:
            rows.append(
                make_row(
                    f"scale/{step}",
                    f"peak RSS MiB @ scale {scale:g}",
                    measured[scale][step][1],
                    "machine memory (24 GiB)",
                    MACHINE_MEMORY_MIB,
                    device_label,
                    command,
                )
            )
    return rows
