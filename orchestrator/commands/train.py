"""``mner train``, ``mner evaluate`` and ``mner predict``: one model, in-process, no Ray."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smvae.settings import apply_overrides, load_yaml


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train one model in-process and save it")
    train.add_argument("config", help="YAML run settings, e.g. configs/train/smvae_cpu.yaml")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.epochs=3")
    train.add_argument("--out", required=True, help="model directory to write")
    train.set_defaults(handler=run_train)

    evaluate = subparsers.add_parser("evaluate", help="score a model on an annotation file")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("data_file", help="IMGID/CoNLL file, e.g. data/twitter2015/test.txt")
    evaluate.add_argument("--out", help="output folder (default: MODEL_DIR/eval-<file name>)")
    evaluate.add_argument("--image-dir", help="folder with <IMGID>.jpg for this file")
    evaluate.add_argument("--image-weights", help="ResNet-152 weights, if not recorded")
    evaluate.set_defaults(handler=run_evaluate)

    predict = subparsers.add_parser("predict", help="tag raw text; prints JSON lines")
    predict.add_argument("model_dir")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text; words are split on whitespace")
    source.add_argument("--input", help='JSON lines file of {"text": ..., "image": ...}')
    predict.add_argument("--image", help="image file for --text")
    predict.add_argument("--image-weights", help="ResNet-152 weights, if not recorded")
    predict.set_defaults(handler=run_predict)


def load_config(path: str, overrides: list[str]) -> dict[str, Any]:
    config_path = Path(path)
    if not config_path.is_file():
        raise FileNotFoundError(f"config file {config_path} not found")
    values = load_yaml(config_path) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{config_path}: expected a mapping of settings at the top level")
    return apply_overrides(values, overrides)


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from orchestrator.methods import get_method, import_function
    from smvae.settings import RunSettings

    run = RunSettings.from_mapping(load_config(args.config, args.overrides))
    # The registry names each method's training function (SMVAE or a baseline).
    run_training = import_function(get_method(run.method).target)
    progress = tqdm(total=run.training.epochs, desc="epochs", unit="epoch", file=sys.stderr)

    def on_epoch(row: dict[str, Any]) -> None:
        progress.update(1)
        progress.set_postfix(loss=f"{row['train_loss']:.3f}", dev_f1=f"{row['dev_f1']:.2f}")

    result = run_training(run, on_epoch=on_epoch, model_dir=args.out)
    progress.close()
    metrics = result.metrics
    print(
        f"test P/R/F1 {metrics['test_precision']:.2f}/{metrics['test_recall']:.2f}/"
        f"{metrics['test_f1']:.2f} (best epoch {metrics['best_epoch']}); model in {args.out}"
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from smvae.inference import evaluate_file
    from smvae.model_dir import load_model_dir

    loaded = load_model_dir(args.model_dir)
    data_file = Path(args.data_file)
    if not data_file.is_file():
        raise FileNotFoundError(f"data file {data_file} not found")
    out = Path(args.out) if args.out else Path(args.model_dir) / f"eval-{data_file.stem}"
    metrics = evaluate_file(loaded, data_file, out, args.image_dir, args.image_weights)
    print(json.dumps({k: metrics[k] for k in ("precision", "recall", "f1")}))
    print(f"metrics and predictions in {out}")
    return 0


def read_inputs(path: Path) -> list[Any]:
    from smvae.inference import TextInput

    inputs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f'{path}:{number}: expected an object with a "text" string')
            if not record["text"].split():
                raise ValueError(f"{path}:{number}: the text has no words")
            image = record.get("image")
            if image is not None and not isinstance(image, str):
                raise ValueError(f'{path}:{number}: "image" must be a file path, got {image!r}')
            inputs.append(TextInput(record["text"], record.get("image")))
    return inputs


def run_predict(args: argparse.Namespace) -> int:
    from smvae.inference import Predictor, TextInput
    from smvae.model_dir import load_model_dir

    if args.text is not None:
        inputs = [TextInput(args.text, args.image)]
    else:
        inputs = read_inputs(Path(args.input))
    loaded = load_model_dir(args.model_dir)
    if args.image is not None and args.input is not None:
        print(
            "mner: warning: --image applies to --text only; give images in the input file",
            file=sys.stderr,
        )
    if any(item.image for item in inputs) and not loaded.uses_images:
        print(
            f"mner: warning: the model in {args.model_dir} was trained without images; "
            "the images are ignored",
            file=sys.stderr,
        )
    predictor = Predictor(loaded, args.image_weights)
    for record in predictor.predict(inputs):
        print(json.dumps(record, ensure_ascii=False))
    return 0
