"""SMVAE module and losses: shapes, span features, product of experts, ELBO terms."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from smvae.model import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    OUTSIDE_LABEL,
    SMVAE,
    SMVAEConfig,
    SpanOutput,
    combine_losses,
    kl_to_standard_normal,
    labelled_elbo_loss,
    loss_weight_lambda,
    product_of_experts,
    span_cross_entropy,
    unlabelled_elbo_loss,
)
from smvae.spans import enumerate_spans

WORD_DIM, IMAGE_DIM, HIDDEN, LATENT, LABELS, MAX_SPAN_LEN = 12, 10, 16, 4, 5, 3
# Padding words get this value, far from the N(0, 1) real words, so a leak would show.
PADDING_VALUE = 50.0

MODES = {
    "full": {},
    "no_images": {"use_images": False},
    "no_mvae": {"use_mvae": False},
    "no_mvae_no_images": {"use_mvae": False, "use_images": False},
    "sample_at_eval": {"sample_at_eval": True},
}


def make_config(**overrides: object) -> SMVAEConfig:
    values: dict[str, object] = {
        "word_dim": WORD_DIM,
        "num_labels": LABELS,
        "image_dim": IMAGE_DIM,
        "hidden_size": HIDDEN,
        "latent_size": LATENT,
        "max_span_len": MAX_SPAN_LEN,
    }
    values.update(overrides)
    return SMVAEConfig(**values)  # type: ignore[arg-type]


def make_model(seed: int = 0, **overrides: object) -> SMVAE:
    torch.manual_seed(seed)
    return SMVAE(make_config(**overrides))


@dataclasses.dataclass
class Batch:
    words: torch.Tensor  # [B,N,Dw]
    word_mask: torch.Tensor  # [B,N]
    image: torch.Tensor  # [B,Dv]
    has_image: torch.Tensor  # [B]
    span_starts: torch.Tensor  # [B,S]
    span_ends: torch.Tensor  # [B,S]
    span_mask: torch.Tensor  # [B,S]

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


def make_batch(lengths: list[int], has_image: list[bool], seed: int = 1) -> Batch:
    """Padded batch with every candidate span of each tweet, in enumerate_spans order."""
    generator = torch.Generator().manual_seed(seed)
    batch, num_words = len(lengths), max(lengths)
    word_mask = torch.arange(num_words)[None, :] < torch.tensor(lengths)[:, None]
    words = torch.randn(batch, num_words, WORD_DIM, generator=generator)
    words[~word_mask] = PADDING_VALUE
    image = torch.randn(batch, IMAGE_DIM, generator=generator)
    with_image = torch.tensor(has_image)
    image[~with_image] = 0.0
    spans = [enumerate_spans(length, MAX_SPAN_LEN) for length in lengths]
    num_spans = max(len(tweet_spans) for tweet_spans in spans)
    starts = torch.zeros(batch, num_spans, dtype=torch.long)
    ends = torch.zeros(batch, num_spans, dtype=torch.long)
    span_mask = torch.zeros(batch, num_spans, dtype=torch.bool)
    for b, tweet_spans in enumerate(spans):
        for k, (start, end) in enumerate(tweet_spans):
            starts[b, k], ends[b, k], span_mask[b, k] = start, end, True
    return Batch(words, word_mask, image, with_image, starts, ends, span_mask)


def slice_tweet(batch: Batch, index: int, num_words: int, num_spans: int) -> Batch:
    """One tweet of ``batch`` as a batch of its own, without padding."""
    return Batch(
        batch.words[index : index + 1, :num_words],
        batch.word_mask[index : index + 1, :num_words],
        batch.image[index : index + 1],
        batch.has_image[index : index + 1],
        batch.span_starts[index : index + 1, :num_spans],
        batch.span_ends[index : index + 1, :num_spans],
        batch.span_mask[index : index + 1, :num_spans],
    )


LENGTHS = [5, 3, 1, 4]
HAS_IMAGE = [True, False, True, True]


# --- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("word_dim", 0),
        ("num_labels", 1),
        ("hidden_size", 15),
        ("latent_size", -3),
        ("max_span_len", 0),
        ("image_dim", 2.5),
        ("dropout", 1.0),
        ("use_mvae", "yes"),
        ("reconstruction", "median"),
    ],
)
def test_config_rejects_invalid_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field) as error:
        make_config(**{field: value})
    assert repr(value) in str(error.value) or str(value) in str(error.value)


def test_config_dict_round_trip() -> None:
    config = make_config(use_images=False, reconstruction="sum", dropout=0.3)
    assert SMVAEConfig.from_dict(config.to_dict()) == config


def test_config_from_dict_rejects_unknown_key() -> None:
    values = make_config().to_dict()
    values["latent_dim"] = 8
    with pytest.raises(ValueError, match="latent_dim"):
        SMVAEConfig.from_dict(values)


# --- shapes and padding -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_output_shapes_in_every_mode(mode: str) -> None:
    model = make_model(**MODES[mode])
    batch = make_batch(LENGTHS, HAS_IMAGE)
    b, s = batch.span_mask.shape
    for training in (True, False):
        model.train(training)
        output = model(*batch.inputs())
        assert output.logits.shape == (b, s, LABELS)
        assert output.span_global.shape == (b, s, HIDDEN)
        assert output.span_edge.shape == (b, s, 4 * HIDDEN)
        assert output.z.shape == (b, s, LATENT)
        assert torch.equal(output.span_mask, batch.span_mask)
        vae_span_fields = ("text_mu", "text_logvar", "z_text", "mu", "logvar")
        image_fields = ("image_mu", "image_logvar", "z_image")
        config = model.config
        for name in vae_span_fields:
            value = getattr(output, name)
            assert (value is None) == (not config.use_mvae), name
            if value is not None:
                assert value.shape == (b, s, LATENT), name
        for name in image_fields:
            value = getattr(output, name)
            assert (value is None) == (not (config.use_mvae and config.use_images)), name
            if value is not None:
                assert value.shape == (b, LATENT), name
        assert torch.isfinite(output.logits).all()


@pytest.mark.parametrize("mode", ["full", "no_mvae", "no_images"])
def test_padding_does_not_change_real_spans(mode: str) -> None:
    model = make_model(**MODES[mode]).eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        together = model(*batch.inputs())
        for index, length in enumerate(LENGTHS):
            num_spans = len(enumerate_spans(length, MAX_SPAN_LEN))
            alone = model(*slice_tweet(batch, index, length, num_spans).inputs())
            for name in ("logits", "span_global", "span_edge", "z", "text_mu", "mu", "logvar"):
                expected = getattr(alone, name)
                if expected is None:
                    continue
                actual = getattr(together, name)[index, :num_spans]
                torch.testing.assert_close(actual, expected[0], atol=1e-5, rtol=1e-5)


# --- span features ------------------------------------------------------------------


def test_span_global_is_mean_over_span() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        output = model(*batch.inputs())
        global_states, _ = model.encode_words(batch.words, batch.word_mask)
    for b, length in enumerate(LENGTHS):
        for k, (start, end) in enumerate(enumerate_spans(length, MAX_SPAN_LEN)):
            expected = global_states[b, start : end + 1].mean(dim=0)
            torch.testing.assert_close(output.span_global[b, k], expected, atol=1e-6, rtol=1e-5)


def test_span_edge_is_boundary_concatenation() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        output = model(*batch.inputs())
        _, edge_states = model.encode_words(batch.words, batch.word_mask)
    for b, length in enumerate(LENGTHS):
        for k, (start, end) in enumerate(enumerate_spans(length, MAX_SPAN_LEN)):
            first, last = edge_states[b, start], edge_states[b, end]
            expected = torch.cat([first, last, first - last, first * last])
            torch.testing.assert_close(output.span_edge[b, k], expected)


def test_encode_words_is_zero_at_padding() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        global_states, edge_states = model.encode_words(batch.words, batch.word_mask)
    assert (global_states[~batch.word_mask] == 0).all()
    assert (edge_states[~batch.word_mask] == 0).all()


# --- product of experts and KL ------------------------------------------------------


def random_experts(seed: int = 3) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    text_mu = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    text_logvar = 2 * torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    image_mu = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    image_logvar = 2 * torch.randn(3, 6, generator=generator, dtype=torch.float64)
    return text_mu, text_logvar, image_mu, image_logvar


def test_product_of_experts_matches_closed_form() -> None:
    text_mu, text_logvar, image_mu, image_logvar = random_experts()
    has_image = torch.tensor([True, True, True])
    mu, logvar = product_of_experts(text_mu, text_logvar, image_mu, image_logvar, has_image)
    var_s, var_v = text_logvar.exp(), image_logvar.exp()[:, None]
    mu_v = image_mu[:, None]
    expected_mu = (text_mu * var_v + mu_v * var_s) / (var_s + var_v)
    expected_var = 1.0 / (1.0 / var_s + 1.0 / var_v)
    torch.testing.assert_close(mu, expected_mu)
    torch.testing.assert_close(logvar.exp(), expected_var)


@pytest.mark.parametrize(
    ("mu_s", "var_s", "mu_v", "var_v"),
    [(0.7, 0.5, -1.2, 2.0), (-2.0, 0.1, 3.0, 0.3), (0.0, 1.0, 0.0, 1.0)],
)
def test_product_of_experts_matches_density_product(
    mu_s: float, var_s: float, mu_v: float, var_v: float
) -> None:
    grid = np.linspace(-15.0, 15.0, 300_001)
    density = np.exp(-((grid - mu_s) ** 2) / (2 * var_s) - (grid - mu_v) ** 2 / (2 * var_v))
    density /= density.sum()
    grid_mean = float((grid * density).sum())
    grid_var = float(((grid - grid_mean) ** 2 * density).sum())

    def as_tensor(value: float, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.full(shape, value, dtype=torch.float64)

    mu, logvar = product_of_experts(
        as_tensor(mu_s, (1, 1, 1)),
        as_tensor(math.log(var_s), (1, 1, 1)),
        as_tensor(mu_v, (1, 1)),
        as_tensor(math.log(var_v), (1, 1)),
        torch.tensor([True]),
    )
    assert mu.item() == pytest.approx(grid_mean, abs=1e-6)
    assert logvar.exp().item() == pytest.approx(grid_var, rel=1e-5)


def test_product_of_experts_without_image_is_text_expert() -> None:
    text_mu, text_logvar, image_mu, image_logvar = random_experts()
    has_image = torch.tensor([True, False, True])
    mu, logvar = product_of_experts(text_mu, text_logvar, image_mu, image_logvar, has_image)
    assert torch.equal(mu[1], text_mu[1])
    assert torch.equal(logvar[1], text_logvar[1])
    assert not torch.allclose(mu[0], text_mu[0])


def test_model_without_image_uses_text_expert_exactly() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        output = model(*batch.inputs())
    assert output.mu is not None and output.text_mu is not None
    assert output.logvar is not None and output.text_logvar is not None
    for b, with_image in enumerate(HAS_IMAGE):
        same_mu = torch.equal(output.mu[b], output.text_mu[b])
        assert same_mu == (not with_image), b
        if not with_image:
            assert torch.equal(output.logvar[b], output.text_logvar[b])


def test_image_reaches_logits_only_with_has_image() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    changed = dataclasses.replace(batch, image=batch.image + 1.0)
    with torch.no_grad():
        before = model(*batch.inputs()).logits
        after = model(*changed.inputs()).logits
    for b, with_image in enumerate(HAS_IMAGE):
        assert torch.equal(before[b], after[b]) == (not with_image), b


@pytest.mark.parametrize("mode", ["no_images", "no_mvae_no_images"])
def test_use_images_false_ignores_image(mode: str) -> None:
    model = make_model(**MODES[mode]).eval()
    batch = make_batch(LENGTHS, [True] * len(LENGTHS))
    changed = dataclasses.replace(batch, image=torch.randn_like(batch.image))
    with torch.no_grad():
        assert torch.equal(model(*batch.inputs()).logits, model(*changed.inputs()).logits)


def test_ablation_fusion_sees_image() -> None:
    model = make_model(use_mvae=False).eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    changed = dataclasses.replace(batch, image=batch.image + 1.0)
    with torch.no_grad():
        before = model(*batch.inputs()).logits
        after = model(*changed.inputs()).logits
    assert not torch.equal(before[0], after[0])
    assert torch.equal(before[1], after[1])


def test_log_variances_are_clamped() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    huge = dataclasses.replace(batch, words=batch.words * 1e4, image=batch.image * 1e6)
    with torch.no_grad():
        output = model(*huge.inputs())
    for value in (output.text_logvar, output.image_logvar):
        assert value is not None
        assert value.min() >= LOGVAR_MIN
        assert value.max() <= LOGVAR_MAX
    assert output.mu is not None and torch.isfinite(output.mu).all()


def test_kl_matches_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(5)
    mu = torch.randn(3, 7, 6, generator=generator, dtype=torch.float64)
    logvar = torch.randn(3, 7, 6, generator=generator, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected)


# --- sampling -----------------------------------------------------------------------


def test_eval_forward_is_deterministic() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        first, second = model(*batch.inputs()), model(*batch.inputs())
    assert torch.equal(first.logits, second.logits)
    assert first.mu is not None and torch.equal(first.z, first.mu)


@pytest.mark.parametrize(("mode", "training"), [("sample_at_eval", False), ("full", True)])
def test_sampling_forwards_differ(mode: str, training: bool) -> None:
    model = make_model(**MODES[mode], dropout=0.0).train(training)
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        first, second = model(*batch.inputs()), model(*batch.inputs())
    assert not torch.equal(first.logits, second.logits)
    assert torch.equal(first.span_global, second.span_global)


# --- input checks -------------------------------------------------------------------


def test_rejects_span_longer_than_max_span_len() -> None:
    model = make_model()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    batch.span_ends[0, 0] = MAX_SPAN_LEN  # span (0, MAX_SPAN_LEN) has MAX_SPAN_LEN + 1 words
    with pytest.raises(ValueError, match="max_span_len"):
        model(*batch.inputs())


def test_rejects_span_past_end_of_tweet() -> None:
    model = make_model()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    batch.span_starts[2, 0], batch.span_ends[2, 0] = 1, 1  # tweet 2 has one word
    with pytest.raises(ValueError, match="start <= end"):
        model(*batch.inputs())


def test_ignores_indices_of_padding_spans() -> None:
    model = make_model().eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    with torch.no_grad():
        before = model(*batch.inputs()).logits
        batch.span_starts[~batch.span_mask] = 999
        batch.span_ends[~batch.span_mask] = -7
        after = model(*batch.inputs()).logits
    assert torch.equal(before[batch.span_mask], after[batch.span_mask])


def test_rejects_word_mask_with_holes() -> None:
    model = make_model()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    batch.word_mask[0, 1] = False
    with pytest.raises(ValueError, match="word_mask"):
        model(*batch.inputs())


def test_rejects_float_word_mask() -> None:
    model = make_model()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    batch.word_mask = batch.word_mask.float()
    with pytest.raises(ValueError, match="word_mask must be a bool tensor"):
        model(*batch.inputs())


def test_rejects_wrong_word_dim() -> None:
    model = make_model()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    batch.words = batch.words[..., :-1]
    with pytest.raises(ValueError, match="words has shape"):
        model(*batch.inputs())


# --- losses -------------------------------------------------------------------------


def make_labels(batch: Batch, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Random labels and a random selection of real spans, at least one per tweet but tweet 3."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, LABELS, batch.span_mask.shape, generator=generator)
    selected = batch.span_mask & (torch.rand(batch.span_mask.shape, generator=generator) < 0.5)
    selected[:, 0] = batch.span_mask[:, 0]
    selected[3] = False
    return labels, selected


def test_span_cross_entropy_matches_manual() -> None:
    generator = torch.Generator().manual_seed(11)
    logits = torch.randn(3, 6, LABELS, generator=generator)
    labels = torch.randint(0, LABELS, (3, 6), generator=generator)
    labels[0, 5] = -100  # unselected spans may carry any label
    selected = torch.rand(3, 6, generator=generator) < 0.5
    selected[0, 5] = False
    total = 0.0
    for b in range(3):
        for s in range(6):
            if selected[b, s]:
                log_probs = torch.log_softmax(logits[b, s], dim=-1)
                total -= log_probs[labels[b, s]].item()
    expected = total / 3  # sum over spans within a tweet, mean over the 3 tweets
    assert span_cross_entropy(logits, labels, selected).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("reconstruction", ["mean", "sum"])
def test_labelled_elbo_matches_manual(reconstruction: str) -> None:
    model = make_model(reconstruction=reconstruction).eval()  # eval: z_text = text_mu
    batch = make_batch(LENGTHS, HAS_IMAGE)
    labels, selected = make_labels(batch)
    with torch.no_grad():
        output = model(*batch.inputs())
        terms = labelled_elbo_loss(model, output, labels, selected, batch.image, batch.has_image)
    assert output.text_mu is not None and output.text_logvar is not None
    assert output.image_mu is not None and output.image_logvar is not None

    def reduce(error: torch.Tensor) -> float:
        return float(error.sum() if reconstruction == "sum" else error.mean())

    text_error = text_kl = image_error = image_kl = 0.0
    for b in range(len(LENGTHS)):
        for s in selected[b].nonzero().flatten().tolist():
            one_hot = torch.zeros(LABELS)
            one_hot[labels[b, s]] = 1.0
            with torch.no_grad():
                rebuilt = model.decode_text(output.text_mu[b, s], one_hot)
            text_error += reduce((rebuilt - output.span_global[b, s]) ** 2)
            text_kl += kl_to_standard_normal(output.text_mu[b, s], output.text_logvar[b, s]).item()
        if HAS_IMAGE[b] and selected[b].any():  # once per tweet with an image and a span
            with torch.no_grad():
                rebuilt = model.decode_image(output.image_mu[b])
            image_error += reduce((rebuilt - batch.image[b]) ** 2)
            image_kl += kl_to_standard_normal(output.image_mu[b], output.image_logvar[b]).item()
    count = len(LENGTHS)
    assert terms.text_reconstruction.item() == pytest.approx(text_error / count, rel=1e-5)
    assert terms.text_kl.item() == pytest.approx(text_kl / count, rel=1e-5)
    assert terms.image_reconstruction.item() == pytest.approx(image_error / count, rel=1e-5)
    assert terms.image_kl.item() == pytest.approx(image_kl / count, rel=1e-5)


def test_reconstruction_targets_get_no_gradient() -> None:
    model = make_model().train()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    labels, selected = make_labels(batch)
    output = model(*batch.inputs())
    # Leaves standing in for the targets, unconnected to the encoder path.
    target_global = output.span_global.detach().clone().requires_grad_()
    target_image = batch.image.clone().requires_grad_()
    output = dataclasses.replace(output, span_global=target_global)
    for terms in (
        labelled_elbo_loss(model, output, labels, selected, target_image, batch.has_image),
        unlabelled_elbo_loss(model, output, target_image, batch.has_image),
    ):
        assert torch.isfinite(terms.total)
        assert terms.text_reconstruction.item() > 0
        gradients = torch.autograd.grad(
            terms.total, [target_global, target_image], allow_unused=True, retain_graph=True
        )
        for gradient in gradients:
            assert gradient is None or (gradient == 0).all()


def crafted_logits(output: SpanOutput, entity_spans: torch.Tensor) -> torch.Tensor:
    """Logits whose argmax is label 2 at ``entity_spans`` and "O" elsewhere."""
    logits = torch.zeros_like(output.logits)
    logits[..., OUTSIDE_LABEL] = 1.0
    logits[..., 2] = torch.where(entity_spans, 3.0, -1.0)
    logits[..., 1] = 0.5
    return logits


def test_unlabelled_elbo_uses_predicted_entities_only() -> None:
    model = make_model(reconstruction="mean").eval()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    entity_spans = torch.zeros_like(batch.span_mask)
    entity_spans[0, [1, 4]] = True
    entity_spans[1, 2] = True  # tweet 1 has no image

    with torch.no_grad():
        output = model(*batch.inputs())
    output = dataclasses.replace(output, logits=crafted_logits(output, entity_spans))
    # A padding span predicted as an entity must not count either.
    output.logits[2, -1, 2] = 10.0
    with torch.no_grad():
        terms = unlabelled_elbo_loss(model, output, batch.image, batch.has_image)

    assert output.text_mu is not None and output.text_logvar is not None
    assert output.image_mu is not None and output.image_logvar is not None
    text_error = text_kl = 0.0
    for b, s in entity_spans.nonzero().tolist():
        distribution = output.logits[b, s].softmax(dim=-1)
        with torch.no_grad():
            rebuilt = model.decode_text(output.text_mu[b, s], distribution)
        text_error += float(((rebuilt - output.span_global[b, s]) ** 2).mean())
        text_kl += kl_to_standard_normal(output.text_mu[b, s], output.text_logvar[b, s]).item()
    with torch.no_grad():
        image_error = float(((model.decode_image(output.image_mu[0]) - batch.image[0]) ** 2).mean())
    image_kl = kl_to_standard_normal(output.image_mu[0], output.image_logvar[0]).item()

    count = len(LENGTHS)
    assert terms.text_reconstruction.item() == pytest.approx(text_error / count, rel=1e-5)
    assert terms.text_kl.item() == pytest.approx(text_kl / count, rel=1e-5)
    # Only tweet 0 has both an image and a predicted entity.
    assert terms.image_reconstruction.item() == pytest.approx(image_error / count, rel=1e-5)
    assert terms.image_kl.item() == pytest.approx(image_kl / count, rel=1e-5)


def test_unlabelled_elbo_is_zero_without_predicted_entities() -> None:
    model = make_model().train()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    output = model(*batch.inputs())
    nothing = torch.zeros_like(batch.span_mask)
    output = dataclasses.replace(output, logits=crafted_logits(output, nothing))
    terms = unlabelled_elbo_loss(model, output, batch.image, batch.has_image)
    assert terms.total.item() == 0.0


@pytest.mark.parametrize("detach", [False, True])
def test_unlabelled_distribution_detach_flag(detach: bool) -> None:
    model = make_model(detach_predicted_labels=detach).train()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    output = model(*batch.inputs())
    entity_spans = torch.zeros_like(batch.span_mask)
    entity_spans[0, :3] = True
    logits = crafted_logits(output, entity_spans).requires_grad_()
    output = dataclasses.replace(output, logits=logits)
    terms = unlabelled_elbo_loss(model, output, batch.image, batch.has_image)
    (gradient,) = torch.autograd.grad(terms.text_reconstruction, [logits], allow_unused=True)
    receives_gradient = gradient is not None and bool((gradient != 0).any())
    assert receives_gradient == (not detach)


def test_elbo_losses_reject_ablation_output() -> None:
    model = make_model(use_mvae=False)
    batch = make_batch(LENGTHS, HAS_IMAGE)
    labels, selected = make_labels(batch)
    output = model(*batch.inputs())
    with pytest.raises(ValueError, match="use_mvae=False"):
        labelled_elbo_loss(model, output, labels, selected, batch.image, batch.has_image)
    with pytest.raises(ValueError, match="use_mvae=False"):
        unlabelled_elbo_loss(model, output, batch.image, batch.has_image)


def test_elbo_without_images_has_zero_image_terms() -> None:
    model = make_model(use_images=False)
    batch = make_batch(LENGTHS, HAS_IMAGE)
    labels, selected = make_labels(batch)
    output = model(*batch.inputs())
    terms = labelled_elbo_loss(model, output, labels, selected, batch.image, batch.has_image)
    assert terms.image_reconstruction.item() == 0.0
    assert terms.image_kl.item() == 0.0
    assert terms.text_kl.item() > 0.0


def test_loss_weight_lambda() -> None:
    assert loss_weight_lambda(100, 3900) == pytest.approx(math.exp(0.975))
    assert loss_weight_lambda(4000, 0) == 1.0
    with pytest.raises(ValueError, match="num_labelled"):
        loss_weight_lambda(0, 10)
    with pytest.raises(ValueError, match="num_unlabelled"):
        loss_weight_lambda(10, -1)


def test_combine_losses_and_every_parameter_gets_gradient() -> None:
    model = make_model().train()
    batch = make_batch(LENGTHS, HAS_IMAGE)
    labels, selected = make_labels(batch)
    output = model(*batch.inputs())
    l1 = span_cross_entropy(output.logits, labels, selected)
    l2 = labelled_elbo_loss(model, output, labels, selected, batch.image, batch.has_image)
    unlabelled = model(*make_batch([4, 2], [True, False], seed=9).inputs())
    l3 = unlabelled_elbo_loss(model, unlabelled, batch.image[:2], batch.has_image[:2])
    loss = combine_losses(l1, l2, l3, weight_lambda=2.0)
    expected = 2.0 * l1 + l2.total + l3.total
    torch.testing.assert_close(loss.total, expected)
    logged = loss.to_floats()
    assert logged["loss_l1"] == pytest.approx(l1.item())
    assert logged["l2_image_kl"] == pytest.approx(l2.image_kl.item())
    loss.total.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_combine_losses_ablation_logs_nan() -> None:
    l1 = torch.tensor(1.5)
    loss = combine_losses(l1, None, None, weight_lambda=1.0)
    assert loss.total.item() == 1.5
    assert math.isnan(loss.to_floats()["loss_l2"])


def fits_batch(model: SMVAE, batch: Batch, labels: torch.Tensor, max_steps: int) -> bool:
    """Train on one batch; return True once every span's argmax equals its label."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(1, max_steps + 1):
        model.train()
        output = model(*batch.inputs())
        loss = span_cross_entropy(output.logits, labels, batch.span_mask)
        if model.config.use_mvae:
            terms = labelled_elbo_loss(
                model, output, labels, batch.span_mask, batch.image, batch.has_image
            )
            loss = loss + terms.total
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                predicted = model(*batch.inputs()).logits.argmax(dim=-1)
            if torch.equal(predicted[batch.span_mask], labels[batch.span_mask]):
                return True
    return False


@pytest.mark.parametrize("mode", ["full", "no_mvae"])
def test_training_fits_tiny_batch(mode: str) -> None:
    batch = make_batch([5, 4], [True, False])
    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(0, LABELS, batch.span_mask.shape, generator=generator)
    model = make_model(**MODES[mode], dropout=0.0)
    assert fits_batch(model, batch, labels, max_steps=100)
