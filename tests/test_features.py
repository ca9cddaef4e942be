"""Word and image features: word positions, truncation, the cache, and the image networks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smvae.conll import Tweet
from smvae.features import (
    EFFICIENTNET_LITE0_CHANNELS,
    TextEncoderSettings,
    build_text_features,
    load_text_encoder,
    tokenize_words,
)
from smvae.image_features import ImageEncoderSettings, build_image_features, build_image_trunk

ZERO_WIDTH_SPACE = "\u200b"
NO_BREAK_SPACE = "\u00a0"


@pytest.fixture(scope="module")
def minilm() -> tuple[object, torch.nn.Module]:
    return load_text_encoder("minilm")


def tweet(words: list[str], image_id: str = "1") -> Tweet:
    return Tweet(image_id, tuple(words), tuple("O" for _ in words), 1)


def test_invisible_words_get_unknown_piece(minilm: tuple[object, torch.nn.Module]) -> None:
    tokenizer, _ = minilm
    words = ["Obama", ZERO_WIDTH_SPACE, NO_BREAK_SPACE, "\ufe0f", "visits"]
    pieces = tokenize_words(tokenizer, words, max_length=64)

    assert len(pieces.word_starts) == len(words)
    for index in (1, 2, 3):
        start, end = pieces.word_starts[index], pieces.word_ends[index]
        assert end - start == 1
        assert pieces.input_ids[start] == tokenizer.unk_token_id  # type: ignore[attr-defined]
    assert pieces.input_ids[0] == tokenizer.cls_token_id  # type: ignore[attr-defined]
    assert pieces.input_ids[-1] == tokenizer.sep_token_id  # type: ignore[attr-defined]


def test_truncated_words_are_counted(minilm: tuple[object, torch.nn.Module]) -> None:
    tokenizer, _ = minilm
    words = [f"word{i}" for i in range(20)]
    pieces = tokenize_words(tokenizer, words, max_length=8)

    kept = sum(start >= 0 for start in pieces.word_starts)
    assert len(pieces.input_ids) <= 8
    assert pieces.truncated_words == len(words) - kept
    assert pieces.truncated_words > 0


def test_text_cache_is_reused(minilm: tuple[object, torch.nn.Module], tmp_path: Path) -> None:
    tweets = [tweet(["Obama", NO_BREAK_SPACE, "visits", "Paris"]), tweet(["hello"], "2")]
    settings = TextEncoderSettings(max_length=32)
    first = build_text_features("demo", "test", "sha", tweets, settings, tmp_path, encoder=minilm)
    written = os.stat(first.folder / "vectors.npy").st_mtime_ns

    # No encoder is passed the second time: loading one would be the only way to encode.
    second = build_text_features("demo", "test", "sha", tweets, settings, tmp_path)

    assert second.folder == first.folder
    assert os.stat(second.folder / "vectors.npy").st_mtime_ns == written
    assert len(second) == 2
    assert second[0].shape == (4, 384)
    assert second[1].shape == (1, 384)
    assert np.abs(second[0][1]).sum() > 0  # the lone U+00A0 word has a vector
    other = build_text_features("demo", "test", "other-sha", tweets[:1], settings, tmp_path)
    assert other.folder != first.folder


def test_first_and_mean_pooling_differ_on_split_words(
    minilm: tuple[object, torch.nn.Module], tmp_path: Path
) -> None:
    tweets = [tweet(["unbelievably", "#throwbackthursday"])]
    first = build_text_features(
        "demo",
        "test",
        "sha",
        tweets,
        TextEncoderSettings(pooling="first"),
        tmp_path,
        encoder=minilm,
    )
    mean = build_text_features(
        "demo", "test", "sha", tweets, TextEncoderSettings(pooling="mean"), tmp_path, encoder=minilm
    )

    assert first.folder != mean.folder
    assert not np.allclose(first[0][1], mean[0][1])


class FailingEncoder(torch.nn.Module):
    """Stands in for an encoder that dies in the middle of a run (an error path)."""

    def forward(self, **_: object) -> None:
        raise KeyboardInterrupt


def test_killed_encoding_leaves_no_cache(
    minilm: tuple[object, torch.nn.Module], tmp_path: Path
) -> None:
    tokenizer, model = minilm
    failing = FailingEncoder()
    failing.config = model.config
    with pytest.raises(KeyboardInterrupt):
        build_text_features(
            "demo",
            "test",
            "sha",
            [tweet(["a"])],
            TextEncoderSettings(),
            tmp_path,
            encoder=(tokenizer, failing),
        )

    assert list((tmp_path / "text").iterdir()) == []


def write_images(folder: Path) -> None:
    folder.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "a.jpg")
    Image.new("RGB", (64, 64), (10, 10, 200)).save(folder / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG file")


def test_resnet152_regions_and_missing_images(tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_images(images)
    tweets = [tweet(["x"], "a"), tweet(["y"], "missing"), tweet(["z"], "b"), tweet(["w"], "broken")]
    settings = ImageEncoderSettings("resnet152", "random", str(images), regions=True)

    features = build_image_features("demo", "test", "sha", tweets, settings, tmp_path / "cache")

    assert features.pooled.shape == (4, 2048)
    assert features.regions is not None
    assert features.regions.shape == (4, 49, 2048)
    assert features.has_image.tolist() == [1, 0, 1, 0]
    assert features.coverage == 0.5
    assert features.meta["missing_or_unreadable"] == 2
    assert np.all(np.asarray(features.pooled[1]) == 0)
    assert np.all(np.asarray(features.pooled[3]) == 0)
    region_mean = np.asarray(features.regions[0]).mean(axis=0)
    np.testing.assert_allclose(region_mean, features.pooled[0], rtol=1e-5)
    assert not np.allclose(features.pooled[0], features.pooled[2])


def test_resnet152_weights_from_file(tmp_path: Path) -> None:
    from torchvision.models import resnet152

    from smvae.image_features import build_resnet152_trunk

    torch.manual_seed(1)
    network = resnet152(weights=None)
    weights = tmp_path / "resnet152.pt"
    torch.save(network.state_dict(), weights)

    trunk = build_resnet152_trunk(str(weights))

    assert not trunk.training
    first_conv = next(trunk.parameters())
    assert torch.equal(first_conv, network.conv1.weight)
    with pytest.raises(FileNotFoundError, match="neither a file nor a torchvision weights name"):
        build_resnet152_trunk(str(tmp_path / "absent.pt"))


def test_image_settings_need_weights_for_resnet() -> None:
    with pytest.raises(ValueError, match="image encoder weights are required"):
        ImageEncoderSettings("resnet152", None, "folder")
    with pytest.raises(NotImplementedError, match="vgg16"):
        ImageEncoderSettings("vgg16", "random", "folder")


def test_efficientnet_random_weights_and_missing_file(tmp_path: Path) -> None:
    first = build_image_trunk(ImageEncoderSettings("efficientnet-lite0", "random"))
    second = build_image_trunk(ImageEncoderSettings("efficientnet-lite0", "random"))
    image = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        output = first(image)

    assert output.shape == (1, EFFICIENTNET_LITE0_CHANNELS, 7, 7)
    with torch.no_grad():
        assert torch.equal(output, second(image))  # seeded, so the same weights
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_image_trunk(ImageEncoderSettings("efficientnet-lite0", str(tmp_path / "absent")))
