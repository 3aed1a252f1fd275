"""`mmrec generate`: write the synthetic dataset in the released format plus raw text (README, "Data formats";
what signal is planted where: mmrec_ray/data/synthetic.py; the files: synthetic_files.py)."""

from __future__ import annotations

import argparse
import dataclasses
import time

from mmrec_ray.errors import ConfigError

HELP = "generate the synthetic dataset: the released format, plus raw sentence text unless --no-text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="the dataset folder to write (what --data takes later)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="1.0 matches the released dataset's statistics"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (same seed -> identical files)")
    parser.add_argument(
        "--no-text",
        dest="text",
        action="store_false",
        help="write sentence embedding CSVs instead of raw text (no encoder needed later)",
    )
    parser.add_argument(
        "--embedding-dim",
        type=int,
        default=64,
        help="width of the embedding CSVs with --no-text (the release: 768)",
    )
    parser.add_argument(
        "--float-text",
        choices=("short", "float32", "release"),
        default="short",
        help="how --no-text writes embedding values: short = 4 decimals (small folders; default), float32 = "
        "shortest round-trip float32, release = full float64 text as the release (~20 characters a value, "
        "1.96 GB parts at 768 columns): for ingest rehearsals",
    )
    parser.add_argument(
        "--sentence-volume",
        type=int,
        default=1,
        metavar="K",
        help="with --no-text, write each sentence's vector K times with fresh noise (the release has several times "
        "the generator's ~0.9 M sentences at scale 1; default 1)",
    )
    parser.add_argument(
        "--rows-per-part",
        type=int,
        default=None,
        help="embedding CSV rows per part (default 200,000; ~1.96 GB parts with --float-text release)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a generator knob (SyntheticParams), e.g. --param session_signal=0.5; repeatable",
    )


def parse_params(pairs: list[str]):
    from mmrec_ray.data.synthetic import SyntheticParams

    known = {f.name: f for f in dataclasses.fields(SyntheticParams)}
    values = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in known:
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE with NAME one of {', '.join(known)}")
        try:
            values[name] = float(raw)
        except ValueError as exc:
            raise ConfigError(f"--param {pair!r}: value is not a number") from exc
    return SyntheticParams(**values)


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.data.synthetic_files import generate

    if not args.scale > 0:
        raise ConfigError(f"--scale must be positive, got {args.scale}")
    if args.embedding_dim < 1:
        raise ConfigError(f"--embedding-dim must be at least 1, got {args.embedding_dim}")
    if args.sentence_volume < 1:
        raise ConfigError(f"--sentence-volume must be at least 1, got {args.sentence_volume}")
    if args.rows_per_part is not None and args.rows_per_part < 1:
        raise ConfigError(f"--rows-per-part must be at least 1, got {args.rows_per_part}")
    params = parse_params(args.param)
    started = time.perf_counter()
    info = generate(
        args.out,
        args.scale,
        args.seed,
        text=args.text,
        embedding_dim=args.embedding_dim,
        params=params,
        rows_per_part=args.rows_per_part,
        float_text=args.float_text,
        sentence_volume=args.sentence_volume,
    )
    counts = info["counts"]
    state = (
        "already complete, kept"
        if info.get("skipped")
        else f"written in {time.perf_counter() - started:.1f} s"
    )
    print(
        f"synthetic data in {args.out} ({state}): {counts['users']} users, {counts['purchase_events']} purchase "
        f"events, {counts['unique_conversations']} conversations ({counts['sentences']} sentences), "
        f"{counts['unique_sessions']} sessions ({counts['actions']} actions); "
        + (
            "raw text"
            if info["text"]
            else f"{info['embedding_parts']} embedding part(s) of width {info['embedding_dim']}"
        )
    )
    return 0
