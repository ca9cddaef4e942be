"""SMVAE: the span-based multimodal variational autoencoder and its training losses.

Zhou et al., "A Span-based Multimodal Variational Autoencoder for Semi-supervised
Multimodal Named Entity Recognition", EMNLP 2022, section 3. Equation numbers below are
the paper's. Deviations from the printed text are stated where they happen:

- product of experts: the paper prints the denominator of ``mu_m`` as
  ``sigma_s^2 sigma_v^2``; the correct precision-weighted mean divides by
  ``sigma_s^2 + sigma_v^2`` (see :func:`product_of_experts`);
- at evaluation ``z`` is the posterior mean unless ``sample_at_eval`` is set, because
  sampling at test time makes scores vary from run to run;
- the image terms of Eq. 2 and Eq. 3 count once per tweet, not once per span.

Dimension legend used in the shape comments:

    B  tweets in the batch          N  words per tweet (padded)
    S  candidate spans per tweet    H  hidden size (BiLSTM output, FFNN hidden layer)
    Z  latent size                  C  labels (entity types + 1, index 0 is "O")
    Dw word-vector size             Dv image-feature size
    K  spans entering a loss (selected or predicted as entities), over the whole batch
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

# Label index of non-entity spans ("O"). Entity types take indices 1..C-1.
OUTSIDE_LABEL = 0

# Bounds on every log-variance an encoder outputs. Without them exp(logvar) in the KL term
# and exp(-logvar) in a precision overflow float32 once |logvar| passes 88. With them a
# variance or precision stays at or below exp(10) = 22026, and the sum of two precisions
# stays under float16's maximum of 65504. Standard deviations range from exp(-5) = 0.0067
# to exp(5) = 148.
# NOTE: the clamp passes no gradient outside the range, so an encoder output beyond a bound
# gets no pull back from the KL term until its input changes.
LOGVAR_MIN = -10.0
LOGVAR_MAX = 10.0

RECONSTRUCTION_MODES = ("sum", "mean")


@dataclass
class SMVAEConfig:
    """Hyperparameters of :class:`SMVAE`; saved with every checkpoint.

    ``reconstruction`` chooses how a squared reconstruction error is reduced over the
    feature dimensions: ``"sum"`` (default) is ``||x - x_hat||^2`` as printed in Eq. 2
    and Eq. 3, ``"mean"`` divides it by the feature size. With ``"mean"`` the
    reconstruction term is too weak against the KL term and the image VAE collapses to
    its prior: on the generated dataset whose entity types only the image reveals
    (``smvae.synthetic``), SMVAE reached test F1 59 with ``"mean"`` and 98 with
    ``"sum"``, no better than text alone with ``"mean"``.

    ``detach_predicted_labels`` stops the gradient of L3 at the predicted label
    distribution. By default (False) L3 trains the classifier too, so that
    reconstruction can inform the labels of unlabelled spans.
    """

    word_dim: int
    num_labels: int
    image_dim: int = 2048
    hidden_size: int = 768
    latent_size: int = 100
    max_span_len: int = 8
    dropout: float = 0.1
    use_mvae: bool = True
    use_images: bool = True
    sample_at_eval: bool = False
    reconstruction: str = "sum"
    detach_predicted_labels: bool = False

    def __post_init__(self) -> None:
        for name in ("word_dim", "image_dim", "hidden_size", "latent_size", "max_span_len"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("num_labels", self.num_labels, minimum=2)
        if self.hidden_size % 2:
            raise ValueError(
                f"hidden_size must be even (two BiLSTM directions of hidden_size / 2), "
                f"got {self.hidden_size}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ValueError(f"dropout must be a number, got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("use_mvae", "use_images", "sample_at_eval", "detach_predicted_labels"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.reconstruction not in RECONSTRUCTION_MODES:
            raise ValueError(
                f"reconstruction must be one of {', '.join(RECONSTRUCTION_MODES)}, "
                f"got {self.reconstruction!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SMVAEConfig:
        """Build a config from :meth:`to_dict` output; raise ValueError on unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown SMVAEConfig keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


@dataclass
class SpanOutput:
    """Everything :class:`SMVAE` computes for a batch of candidate spans.

    Fields of the variational part (``text_*``, ``image_*``, ``mu``, ``logvar``) are None
    with ``use_mvae=False``; the ``image_*`` fields are also None with ``use_images=False``.
    Values at padding spans (``span_mask`` False) are computed but meaningless.
    """

    logits: Tensor  # [B,S,C] span classifier scores (Eq. 1's y_hat before softmax)
    span_global: Tensor  # [B,S,H] c^g, mean of H^g over the span
    span_edge: Tensor  # [B,S,4H] c^e = [h_i; h_j; h_i - h_j; h_i * h_j] from H^e
    z: Tensor  # [B,S,Z] classifier's latent input: z^m, or the ablation's fusion
    span_mask: Tensor  # [B,S] bool, False at padding spans
    text_mu: Tensor | None = None  # [B,S,Z] q(z^s | c^g)
    text_logvar: Tensor | None = None  # [B,S,Z]
    z_text: Tensor | None = None  # [B,S,Z] sample of q(z^s | c^g), decoder input
    image_mu: Tensor | None = None  # [B,Z] q(z^v | V^g)
    image_logvar: Tensor | None = None  # [B,Z]
    z_image: Tensor | None = None  # [B,Z] sample of q(z^v | V^g), decoder input
    mu: Tensor | None = None  # [B,S,Z] product of experts q(z^m | c^g, V^g)
    logvar: Tensor | None = None  # [B,S,Z]


class FeedForward(nn.Module):
    """The paper's FFNN: Linear, ReLU, dropout, Linear (the paper leaves depth unstated)."""

    def __init__(self, in_size: int, hidden_size: int, out_size: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, out_size),
        )

    def forward(self, inputs: Tensor) -> Tensor:
        return self.layers(inputs)


class GaussianEncoder(nn.Module):
    """VAE encoder: two FFNNs give the mean and the clamped log-variance of q(z | x)."""

    def __init__(self, in_size: int, hidden_size: int, latent_size: int, dropout: float) -> None:
        super().__init__()
        self.mean = FeedForward(in_size, hidden_size, latent_size, dropout)
        self.log_variance = FeedForward(in_size, hidden_size, latent_size, dropout)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        logvar = self.log_variance(inputs).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return self.mean(inputs), logvar


def gather_words(hidden: Tensor, index: Tensor) -> Tensor:
    """Pick ``hidden[b, index[b, s]]`` for every span: [B,N,H] and [B,S] -> [B,S,H]."""
    expanded = index.unsqueeze(-1).expand(-1, -1, hidden.size(-1))  # [B,S,H]
    return torch.gather(hidden, 1, expanded)


def span_means(hidden: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """Compute c^g(i, j), the mean of ``hidden`` over words i..j, with one prefix sum.

    The work is O(N + S), independent of span length. The prefix sum runs in float32 so
    that a half-precision model does not lose the small differences of large sums.
    """
    prefix = hidden.float().cumsum(dim=1)  # [B,N,H]
    prefix = F.pad(prefix, (0, 0, 1, 0))  # [B,N+1,H]; prefix[:, k] sums the first k words
    totals = gather_words(prefix, ends + 1) - gather_words(prefix, starts)  # [B,S,H]
    lengths = (ends - starts + 1).unsqueeze(-1).float()  # [B,S,1]
    return (totals / lengths).to(hidden.dtype)  # [B,S,H]


def span_edges(hidden: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """Compute c^e(i, j) = [h_i; h_j; h_i - h_j; h_i * h_j] (section 3.1)."""
    first = gather_words(hidden, starts)  # [B,S,H]
    last = gather_words(hidden, ends)  # [B,S,H]
    return torch.cat([first, last, first - last, first * last], dim=-1)  # [B,S,4H]


def product_of_experts(
    text_mu: Tensor,
    text_logvar: Tensor,
    image_mu: Tensor,
    image_logvar: Tensor,
    has_image: Tensor,
) -> tuple[Tensor, Tensor]:
    """Fuse q(z^s | c^g) [B,S,Z] and q(z^v | V^g) [B,Z] into q(z^m) [B,S,Z] (section 3.2).

    Precision-weighted product of two Gaussians:
    ``sigma_m^2 = 1 / (1/sigma_s^2 + 1/sigma_v^2)`` and
    ``mu_m = (mu_s sigma_v^2 + mu_v sigma_s^2) / (sigma_s^2 + sigma_v^2)``. The paper prints
    the denominator of ``mu_m`` as ``sigma_s^2 sigma_v^2``, which is not the product's mean.
    The code works in log-variance space: the weight of the text mean,
    ``sigma_v^2 / (sigma_s^2 + sigma_v^2)``, is ``sigmoid(logvar_v - logvar_s)``, and
    ``logvar_m = -logaddexp(-logvar_s, -logvar_v)``, so no precision is formed explicitly.
    Tweets with ``has_image`` [B] False get the text expert unchanged, bit for bit.
    """
    image_mu = image_mu.unsqueeze(1)  # [B,1,Z]
    image_logvar = image_logvar.unsqueeze(1)  # [B,1,Z]
    text_weight = torch.sigmoid(image_logvar - text_logvar)  # [B,S,Z]
    fused_mu = text_weight * text_mu + (1.0 - text_weight) * image_mu  # [B,S,Z]
    fused_logvar = -torch.logaddexp(-text_logvar, -image_logvar)  # [B,S,Z]
    with_image = has_image.view(-1, 1, 1)  # [B,1,1]
    mu = torch.where(with_image, fused_mu, text_mu)  # [B,S,Z]
    logvar = torch.where(with_image, fused_logvar, text_logvar)  # [B,S,Z]
    return mu, logvar


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """Draw ``z = mu + sigma * eps`` with ``eps ~ N(0, I)`` (Kingma and Welling, 2014)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over the last (latent) dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class SMVAE(nn.Module):
    """Span classifier over a product-of-experts latent of a text VAE and an image VAE.

    ``use_mvae=False`` is the ablation "w/o MVAE": no VAE, and the classifier receives the
    deterministic fusion ``FFNN([c^g; has_image * W V^g])`` (FFNN of hidden size H and output
    size Z, ``W`` a linear projection of the image feature to H) in place of z^m. With
    ``use_images=False`` the image modules are not built, every tweet uses the text expert
    alone, and the ablation's fusion reads ``FFNN(c^g)``.
    """

    def __init__(self, config: SMVAEConfig) -> None:
        super().__init__()
        self.config = config
        hidden, latent, dropout = config.hidden_size, config.latent_size, config.dropout
        direction_size = hidden // 2
        self.global_lstm = nn.LSTM(
            config.word_dim, direction_size, batch_first=True, bidirectional=True
        )
        self.edge_lstm = nn.LSTM(
            config.word_dim, direction_size, batch_first=True, bidirectional=True
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = FeedForward(latent + 4 * hidden, hidden, config.num_labels, dropout)

        # Variational part (None in the ablation, image modules None without images).
        self.text_encoder: GaussianEncoder | None = None
        self.text_decoder: FeedForward | None = None
        self.image_encoder: GaussianEncoder | None = None
        self.image_decoder: FeedForward | None = None
        if config.use_mvae:
            self.text_encoder = GaussianEncoder(hidden, hidden, latent, dropout)
            self.text_decoder = FeedForward(latent + config.num_labels, hidden, hidden, dropout)
        if config.use_mvae and config.use_images:
            self.image_encoder = GaussianEncoder(config.image_dim, hidden, latent, dropout)
            self.image_decoder = FeedForward(latent, hidden, config.image_dim, dropout)

        # Deterministic fusion of the ablation "w/o MVAE".
        self.image_projection: nn.Linear | None = None
        self.fusion: FeedForward | None = None
        if not config.use_mvae and config.use_images:
            self.image_projection = nn.Linear(config.image_dim, hidden)
            self.fusion = FeedForward(2 * hidden, hidden, latent, dropout)
        elif not config.use_mvae:
            self.fusion = FeedForward(hidden, hidden, latent, dropout)

    def forward(
        self,
        words: Tensor,  # [B,N,Dw]
        word_mask: Tensor,  # [B,N] bool, a prefix of True per tweet
        image: Tensor,  # [B,Dv], zeros where has_image is False
        has_image: Tensor,  # [B] bool
        span_starts: Tensor,  # [B,S] long
        span_ends: Tensor,  # [B,S] long, inclusive
        span_mask: Tensor,  # [B,S] bool
    ) -> SpanOutput:
        """Score every candidate span; see :class:`SpanOutput` for what is returned."""
        self._check_inputs(words, word_mask, image, has_image, span_starts, span_ends, span_mask)
        global_states, edge_states = self.encode_words(words, word_mask)  # [B,N,H] each
        # Padding spans may carry any index, so point them at word 0 to keep gathers in range.
        starts = span_starts.masked_fill(~span_mask, 0)  # [B,S]
        ends = span_ends.masked_fill(~span_mask, 0)  # [B,S]
        span_global = span_means(global_states, starts, ends)  # [B,S,H]
        span_edge = span_edges(edge_states, starts, ends)  # [B,S,4H]
        has_image = has_image & self.config.use_images  # [B]
        if self.config.use_mvae:
            latents = self._variational_latents(span_global, image, has_image)
        else:
            latents = {"z": self._fuse(span_global, image, has_image)}
        z = latents.pop("z")
        assert z is not None
        logits = self.classifier(torch.cat([z, span_edge], dim=-1))  # [B,S,C]
        return SpanOutput(
            logits=logits,
            span_global=span_global,
            span_edge=span_edge,
            z=z,
            span_mask=span_mask,
            **latents,
        )

    def encode_words(self, words: Tensor, word_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Run the two BiLSTMs over the words: H^g and H^e, each [B,N,H], zero at padding.

        Sequences are packed, so padding words never reach a real word's state.
        """
        lengths = word_mask.sum(dim=1).cpu()  # [B]
        packed = pack_padded_sequence(words, lengths, batch_first=True, enforce_sorted=False)
        states = []
        for lstm in (self.global_lstm, self.edge_lstm):
            output, _ = lstm(packed)
            padded, _ = pad_packed_sequence(output, batch_first=True, total_length=words.size(1))
            states.append(self.dropout(padded))  # [B,N,H]
        return states[0], states[1]

    def decode_text(self, z_text: Tensor, label_distribution: Tensor) -> Tensor:
        """Reconstruct c^g from ``[z^s; y]`` (section 3.2): [..., Z] and [..., C] -> [..., H]."""
        if self.text_decoder is None:
            raise ValueError("this SMVAE has no text decoder: it was built with use_mvae=False")
        return self.text_decoder(torch.cat([z_text, label_distribution], dim=-1))

    def decode_image(self, z_image: Tensor) -> Tensor:
        """Reconstruct V^g from z^v (section 3.2): [..., Z] -> [..., Dv]."""
        if self.image_decoder is None:
            raise ValueError(
                "this SMVAE has no image decoder: it was built with use_mvae=False "
                "or use_images=False"
            )
        return self.image_decoder(z_image)

    def _sample(self, mu: Tensor, logvar: Tensor) -> Tensor:
        if self.training or self.config.sample_at_eval:
            return reparameterize(mu, logvar)
        return mu

    def _variational_latents(
        self, span_global: Tensor, image: Tensor, has_image: Tensor
    ) -> dict[str, Tensor | None]:
        """Encode both modalities and fuse them by product of experts (section 3.2)."""
        assert self.text_encoder is not None
        text_mu, text_logvar = self.text_encoder(span_global)  # [B,S,Z] each
        latents: dict[str, Tensor | None] = {
            "text_mu": text_mu,
            "text_logvar": text_logvar,
            "z_text": self._sample(text_mu, text_logvar),  # [B,S,Z]
        }
        mu, logvar = text_mu, text_logvar
        if self.image_encoder is not None:
            image_mu, image_logvar = self.image_encoder(image)  # [B,Z] each
            latents["image_mu"] = image_mu
            latents["image_logvar"] = image_logvar
            latents["z_image"] = self._sample(image_mu, image_logvar)  # [B,Z]
            mu, logvar = product_of_experts(text_mu, text_logvar, image_mu, image_logvar, has_image)
        latents["mu"] = mu
        latents["logvar"] = logvar
        latents["z"] = self._sample(mu, logvar)  # [B,S,Z], z^m
        return latents

    def _fuse(self, span_global: Tensor, image: Tensor, has_image: Tensor) -> Tensor:
        """Ablation "w/o MVAE": deterministic fusion of c^g and the projected image."""
        assert self.fusion is not None
        if self.image_projection is None:
            return self.fusion(span_global)  # [B,S,Z]
        projected = self.image_projection(image) * has_image.unsqueeze(-1)  # [B,H]
        projected = projected.unsqueeze(1).expand_as(span_global)  # [B,S,H]
        return self.fusion(torch.cat([span_global, projected], dim=-1))  # [B,S,Z]

    def _check_inputs(
        self,
        words: Tensor,
        word_mask: Tensor,
        image: Tensor,
        has_image: Tensor,
        span_starts: Tensor,
        span_ends: Tensor,
        span_mask: Tensor,
    ) -> None:
        """Raise ValueError when shapes or dtypes disagree or a real span lies outside its tweet."""
        if words.dim() != 3 or span_starts.dim() != 2:
            raise ValueError(
                f"words must have shape (B, N, Dw) and span_starts (B, S), got "
                f"{tuple(words.shape)} and {tuple(span_starts.shape)}"
            )
        batch, num_words, _ = words.shape
        num_spans = span_starts.size(1)
        expected = {
            "words": (words.shape, (batch, num_words, self.config.word_dim)),
            "word_mask": (word_mask.shape, (batch, num_words)),
            "image": (image.shape, (batch, self.config.image_dim)),
            "has_image": (has_image.shape, (batch,)),
            "span_starts": (span_starts.shape, (batch, num_spans)),
            "span_ends": (span_ends.shape, (batch, num_spans)),
            "span_mask": (span_mask.shape, (batch, num_spans)),
        }
        for name, (shape, wanted) in expected.items():
            if tuple(shape) != wanted:
                raise ValueError(f"{name} has shape {tuple(shape)}, expected {wanted}")
        for name, mask in (
            ("word_mask", word_mask),
            ("has_image", has_image),
            ("span_mask", span_mask),
        ):
            if mask.dtype != torch.bool:
                raise ValueError(f"{name} must be a bool tensor, got dtype {mask.dtype}")

        lengths = word_mask.sum(dim=1)  # [B]
        positions = torch.arange(num_words, device=word_mask.device)  # [N]
        if (lengths == 0).any() or not torch.equal(positions < lengths[:, None], word_mask):
            raise ValueError("word_mask must mark at least one word per tweet, all words first")
        starts, ends = span_starts[span_mask], span_ends[span_mask]  # [K] each
        tweet_lengths = lengths[:, None].expand_as(span_mask)[span_mask]  # [K]
        if ((starts < 0) | (ends < starts) | (ends >= tweet_lengths)).any():
            raise ValueError("every real span needs 0 <= start <= end < number of words")
        if (ends - starts + 1 > self.config.max_span_len).any():
            raise ValueError(
                f"a real span is longer than max_span_len={self.config.max_span_len} words"
            )


# --------------------------------------------------------------------------------------
# Losses (section 3.2, Eq. 1-4). Reduction everywhere: sum over the spans of a tweet, then
# mean over the B tweets of the batch (tweets with no span in a loss count as zero).
# --------------------------------------------------------------------------------------


@dataclass
class ElboTerms:
    """The four terms of Eq. 2 (labelled) or Eq. 3 (unlabelled), each a scalar tensor."""

    text_reconstruction: Tensor
    image_reconstruction: Tensor
    text_kl: Tensor
    image_kl: Tensor

    @property
    def total(self) -> Tensor:
        return self.text_reconstruction + self.image_reconstruction + self.text_kl + self.image_kl

    def to_floats(self, prefix: str) -> dict[str, float]:
        """Plain numbers for logging, keyed ``{prefix}_{term}``."""
        return {f"{prefix}_{f.name}": float(getattr(self, f.name).detach()) for f in fields(self)}


@dataclass
class SMVAELoss:
    """Eq. 4, ``lambda * L1 + L2 + L3``, with its parts kept for logging."""

    total: Tensor
    l1: Tensor
    l2: ElboTerms | None
    l3: ElboTerms | None
    weight_lambda: float

    def to_floats(self) -> dict[str, float]:
        """``loss_l1``, ``loss_l2``, ``loss_l3`` (NaN where absent) and every ELBO term."""
        values = {"loss": float(self.total.detach()), "loss_l1": float(self.l1.detach())}
        for name, terms in (("l2", self.l2), ("l3", self.l3)):
            values[f"loss_{name}"] = float(terms.total.detach()) if terms else math.nan
            if terms is not None:
                values.update(terms.to_floats(name))
        return values


def span_cross_entropy(logits: Tensor, labels: Tensor, selected: Tensor) -> Tensor:
    """L1 (Eq. 1): cross-entropy over the selected spans.

    ``logits`` [B,S,C], ``labels`` [B,S] long (any value where not selected), ``selected``
    [B,S] bool: gold spans plus the sampled non-entity spans. Summed over the spans of a
    tweet and averaged over the B tweets.
    """
    batch = logits.size(0)
    losses = F.cross_entropy(logits[selected], labels[selected], reduction="sum")  # scalar
    return losses / max(batch, 1)


def labelled_elbo_loss(
    model: SMVAE,
    output: SpanOutput,
    labels: Tensor,  # [B,S] long
    selected: Tensor,  # [B,S] bool, the spans of L1
    image: Tensor,  # [B,Dv]
    has_image: Tensor,  # [B] bool
) -> ElboTerms:
    """L2 (Eq. 2): the negative ELBO of the labelled spans selected for L1.

    The text decoder reads ``[z^s; one-hot gold label]``. Deviations from Eq. 2: the image
    reconstruction and image KL count once per tweet that has an image and at least one
    selected span, where Eq. 2 repeats them for every span of the tweet; reconstruction
    errors follow ``config.reconstruction``. Reconstruction targets (c^g and V^g) are
    detached, so the targets themselves pass no gradient into the encoder.
    """
    label_distribution = F.one_hot(labels[selected], model.config.num_labels)  # [K,C]
    return _elbo_terms(model, output, selected, label_distribution.float(), image, has_image)


def unlabelled_elbo_loss(
    model: SMVAE,
    output: SpanOutput,
    image: Tensor,  # [B,Dv]
    has_image: Tensor,  # [B] bool
    entity_spans: Tensor | None = None,  # [B,S] bool
) -> ElboTerms:
    """L3 (Eq. 3): the negative ELBO of the candidate spans predicted as entities.

    A span enters when its argmax label is not "O", or, when ``entity_spans`` is given,
    when it is marked there: a trainer may find the predicted entities in a cheaper pass
    without gradients and run this loss on those spans alone. The text decoder reads
    ``[z^s; softmax(logits)]``; the distribution is detached only with
    ``config.detach_predicted_labels``, so by default L3 also trains the classifier.
    The image terms count once per tweet that has an image and at least one predicted
    entity span (Eq. 3 repeats them per span); reconstruction targets are detached.
    """
    if entity_spans is None:
        predicted = output.logits.argmax(dim=-1)  # [B,S]
        entity_spans = output.span_mask & (predicted != OUTSIDE_LABEL)  # [B,S]
    else:
        entity_spans = entity_spans & output.span_mask  # [B,S]
    probabilities = output.logits[entity_spans].softmax(dim=-1)  # [K,C]
    if model.config.detach_predicted_labels:
        probabilities = probabilities.detach()
    return _elbo_terms(model, output, entity_spans, probabilities, image, has_image)


def _elbo_terms(
    model: SMVAE,
    output: SpanOutput,
    spans: Tensor,  # [B,S] bool, the spans entering the loss
    label_distribution: Tensor,  # [K,C], one row per True entry of spans
    image: Tensor,  # [B,Dv]
    has_image: Tensor,  # [B] bool
) -> ElboTerms:
    """Shared body of Eq. 2 and Eq. 3."""
    if output.text_mu is None or output.text_logvar is None or output.z_text is None:
        raise ValueError("L2 and L3 need the VAE outputs, which use_mvae=False does not compute")
    batch = max(output.logits.size(0), 1)
    mode = model.config.reconstruction
    reconstruction = model.decode_text(output.z_text[spans], label_distribution)  # [K,H]
    target = output.span_global[spans].detach()  # [K,H]
    text_error = _squared_error(reconstruction, target, mode)  # [K]
    text_kl = kl_to_standard_normal(output.text_mu[spans], output.text_logvar[spans])  # [K]
    zero = output.logits.new_zeros(())
    terms = ElboTerms(text_error.sum() / batch, zero, text_kl.sum() / batch, zero)
    if output.image_mu is None or output.image_logvar is None or output.z_image is None:
        return terms
    with_image = has_image & spans.any(dim=1)  # [B]
    image_error = _squared_error(model.decode_image(output.z_image), image.detach(), mode)  # [B]
    image_kl = kl_to_standard_normal(output.image_mu, output.image_logvar)  # [B]
    terms.image_reconstruction = torch.where(with_image, image_error, zero).sum() / batch
    terms.image_kl = torch.where(with_image, image_kl, zero).sum() / batch
    return terms


def _squared_error(reconstruction: Tensor, target: Tensor, mode: str) -> Tensor:
    """Squared error over the last dimension, summed or averaged (``SMVAEConfig``)."""
    error = (reconstruction - target).pow(2)  # [..., D]
    return error.sum(dim=-1) if mode == "sum" else error.mean(dim=-1)


def loss_weight_lambda(num_labelled: int, num_unlabelled: int) -> float:
    """Weight of L1 in Eq. 4: ``exp(1 - |D_l| / (|D_l| + |D_u|))``.

    1 for supervised training (``|D_u| = 0``), approaching e as labelled data gets scarce.
    """
    if num_labelled < 1:
        raise ValueError(f"num_labelled must be at least 1, got {num_labelled}")
    if num_unlabelled < 0:
        raise ValueError(f"num_unlabelled must be at least 0, got {num_unlabelled}")
    return math.exp(1.0 - num_labelled / (num_labelled + num_unlabelled))


def combine_losses(
    l1: Tensor, l2: ElboTerms | None, l3: ElboTerms | None, weight_lambda: float
) -> SMVAELoss:
    """Eq. 4: ``lambda * L1 + L2 + L3``; pass None for a term that does not apply.

    The ablation (use_mvae=False) has neither L2 nor L3, and supervised training has no L3.
    """
    total = weight_lambda * l1
    for terms in (l2, l3):
        if terms is not None:
            total = total + terms.total
    return SMVAELoss(total=total, l1=l1, l2=l2, l3=l3, weight_lambda=weight_lambda)
