"""Bad input gets an error that names the file, line or setting and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.spec import SpecError, parse_spec
from orchestrator.sweep import run_sweep
from smvae.conll import DataFormatError, read_tweets
from smvae.settings import RunSettings, load_yaml


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"IMGID:1\nParis\tB-LOC\n\nIMGID:2\ncaf\xe9\tO\n")

    with pytest.raises(DataFormatError, match=r"latin1\.txt:5: invalid UTF-8") as caught:
        read_tweets(path)
    assert caught.value.line == 5


def test_empty_annotation_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("\n\n")

    with pytest.raises(DataFormatError, match=r"empty\.txt:1: no tweets"):
        read_tweets(path)


def test_long_value_is_shortened(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("IMGID:1\n" + "x" * 5000 + "\n")

    with pytest.raises(DataFormatError, match="line without a TAB") as caught:
        read_tweets(path)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"training": {"epochs": "abc"}}, r"training\.epochs: expected an integer, got 'abc'"),
        ({"training": {"epochs": 1.5}}, r"training\.epochs: expected an integer, got 1\.5"),
        ({"training": {"learning_rate": "x"}}, r"training\.learning_rate: expected a number"),
        ({"seed": "abc"}, r"invalid setting seed: expected an integer"),
        ({"training": 3}, r"invalid setting training: expected a mapping, got 3"),
        ({"model": {"foo": 1}}, r"unknown setting model\.foo; known settings of model"),
        ({"model": {"hidden_size": 0}}, r"hidden_size must be at least 1, got 0"),
    ],
)
def test_run_settings_name_bad_value(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunSettings.from_mapping(settings)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("method: smvae\ntraining: {epochs: 3\n")

    with pytest.raises(ValueError, match=r"run\.yaml:3:1: invalid YAML"):
        load_yaml(path)


def test_dry_run_checks_trial_settings(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "name": "bad",
            "methods": ["smvae"],
            "datasets": ["twitter2015"],
            "seeds": [0],
            "labelled": [100],
            "setting": "semi-supervised",
            "model": {"hidden_sizes": 32},
            "run_dir": str(tmp_path / "run"),
        }
    )

    with pytest.raises(SpecError, match=r"unknown setting model\.hidden_sizes"):
        run_sweep(spec, dry_run=True)


def test_imgid_with_whitespace_rejected(tmp_path: Path) -> None:
    path = tmp_path / "tab.txt"
    path.write_text("IMGID:1\tO\nParis\tB-LOC\n")

    with pytest.raises(DataFormatError, match=r"tab\.txt:1: IMGID contains whitespace"):
        read_tweets(path)


def test_predict_input_names_line(tmp_path: Path) -> None:
    from orchestrator.commands.train import read_inputs

    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "Paris"}\n\n{"text": "  "}\n')
    with pytest.raises(ValueError, match=r"empty\.jsonl:3: the text has no words"):
        read_inputs(empty)

    image = tmp_path / "image.jsonl"
    image.write_text('{"text": "Paris", "image": 5}\n')
    with pytest.raises(ValueError, match=r'image\.jsonl:1: "image" must be a file path'):
        read_inputs(image)


def test_device_setting_is_checked() -> None:
    import torch

    from smvae.loop import select_device

    with pytest.raises(ValueError, match=r"training\.device must be auto, cpu, cuda"):
        RunSettings.from_mapping({"training": {"device": "tpu"}})
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
            select_device("cuda")
