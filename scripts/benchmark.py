"""Benchmarks behind docs/benchmarks.md; each prints one Markdown table.

    python scripts/benchmark.py features twitter2015   # text features: speed, memory, size
    python scripts/benchmark.py scoring MODEL_DIR      # time to score one tweet vs length
    python scripts/benchmark.py epoch CONFIG [k=v ...] # one training epoch and a dev pass

Speed and memory are measured here, never asserted in tests. Run on a quiet machine:
other processes on the same cores change every number.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def benchmark_features(dataset: str, threads: int) -> None:
    from smvae.corpus import prepare_dataset
    from smvae.datasets import data_dir
    from smvae.features import TextEncoderSettings

    torch.set_num_threads(threads)
    cache = Path(tempfile.mkdtemp(prefix="mner-bench-"))
    try:
        started = time.perf_counter()
        splits = prepare_dataset(dataset, data_dir(), cache, TextEncoderSettings(), None)
        first = time.perf_counter() - started
        started = time.perf_counter()
        prepare_dataset(dataset, data_dir(), cache, TextEncoderSettings(), None)
        second = time.perf_counter() - started
        tweets = sum(len(s) for s in splits.values())
        words = sum(s.words.meta["words"] for s in splits.values() if s.words is not None)
        print(
            "| dataset | tweets | words | threads | first build (s) | tweets/s | "
            "second call (s) | peak RSS (MiB) | cache (MiB) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        print(
            f"| {dataset} | {tweets} | {words} | {threads} | {first:.1f} | "
            f"{tweets / first:.0f} | {second:.2f} | {peak_rss_mib():.0f} | "
            f"{folder_mib(cache):.0f} |"
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def benchmark_scoring(model_dir: str, threads: int, repeats: int) -> None:
    import numpy as np

    from smvae.batching import LabelMap
    from smvae.conll import Tweet
    from smvae.corpus import SplitData
    from smvae.inference import InMemoryImageFeatures, InMemoryWordVectors
    from smvae.model import SMVAE
    from smvae.model_dir import load_model_dir
    from smvae.train import predict_spans

    torch.set_num_threads(threads)
    loaded = load_model_dir(model_dir)
    if not isinstance(loaded.model, SMVAE):
        raise SystemExit(f"{model_dir} contains a {loaded.run.method} model; give an SMVAE one")
    config = loaded.model.config
    print("| max_span_len | words | candidate spans | ms per tweet |")
    print("| --- | --- | --- | --- |")
    for max_span_len in (4, 8, 16):
        model = SMVAE(type(config)(**{**config.to_dict(), "max_span_len": max_span_len}))
        model.load_state_dict(loaded.model.state_dict())
        model.eval()
        for length in (10, 30, 60):
            words = tuple(f"w{i}" for i in range(length))
            tweet = Tweet("bench", words, ("O",) * length, 0)
            vectors = np.random.default_rng(0).normal(size=(length, config.word_dim))
            split = SplitData(
                "bench",
                Path("-"),
                "",
                [tweet],
                InMemoryWordVectors([vectors.astype(np.float32)], config.word_dim),
                InMemoryImageFeatures(
                    np.zeros((1, config.image_dim), np.float32), np.zeros(1, np.uint8)
                ),
            )
            predict_spans(model, split, LabelMap(loaded.label_map.names[1:]), 1)  # warm-up
            started = time.perf_counter()
            for _ in range(repeats):
                predict_spans(model, split, LabelMap(loaded.label_map.names[1:]), 1)
            milliseconds = 1000 * (time.perf_counter() - started) / repeats
            spans = sum(min(max_span_len, length - i) for i in range(length))
            print(f"| {max_span_len} | {length} | {spans} | {milliseconds:.2f} |")


def benchmark_epoch(config: str, overrides: list[str]) -> None:
    from orchestrator.commands.train import load_config
    from smvae.settings import RunSettings
    from smvae.train import build_trainer, evaluate, prepare_features, train_epoch

    run = RunSettings.from_mapping(load_config(config, overrides))
    if run.training.threads:
        torch.set_num_threads(run.training.threads)
    trainer = build_trainer(run, prepare_features(run))
    started = time.perf_counter()
    train_epoch(trainer, 1)
    epoch = time.perf_counter() - started
    started = time.perf_counter()
    evaluate(trainer, "valid")
    dev = time.perf_counter() - started
    print(
        "| dataset | setting | labelled | unlabelled per epoch | threads | epoch (s) | "
        "dev evaluation (s) | dev tweets |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {run.dataset} | {run.setting} | {len(trainer.labelled)} | "
        f"{run.training.unlabelled_per_epoch or len(trainer.unlabelled)} | "
        f"{torch.get_num_threads()} | {epoch:.1f} | {dev:.1f} | {len(trainer.splits['valid'])} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    features = commands.add_parser("features")
    features.add_argument("dataset")
    features.add_argument("--threads", type=int, default=2)
    scoring = commands.add_parser("scoring")
    scoring.add_argument("model_dir")
    scoring.add_argument("--threads", type=int, default=1)
    scoring.add_argument("--repeats", type=int, default=50)
    epoch = commands.add_parser("epoch")
    epoch.add_argument("config")
    epoch.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.command == "features":
        benchmark_features(args.dataset, args.threads)
    elif args.command == "scoring":
        benchmark_scoring(args.model_dir, args.threads, args.repeats)
    else:
        benchmark_epoch(args.config, args.overrides)


if __name__ == "__main__":
    main()
