"""Linear-chain conditional random field (Lafferty et al., 2001) over per-word emission scores.

Dimensions:
    B  sentences in a batch
    N  words per sentence, padded to the longest sentence of the batch
    T  tags
    K  label sequences kept by k-best decoding

Inputs follow one convention throughout: ``emissions [B, N, T]`` are unnormalised
log-potentials, and ``mask [B, N]`` is True at real words. Each sentence has at least one
word and its real words come first (``mask`` is True on a prefix of each row). A label
sequence ``y`` of a sentence with ``L`` words scores

    s(y) = start[y_0] + sum_{i<L} emissions[i, y_i] + sum_{0<i<L} transitions[y_{i-1}, y_i]
           + end[y_{L-1}]

and has probability ``p(y | x) = exp(s(y) - log Z)`` with ``log Z = logsumexp_y s(y)``.
Everything is computed in log space with ``torch.logsumexp``.

BIO constraints: given IOB2 tag names, the transitions that give invalid IOB2 (start -> I-X,
O -> I-X, and B-X or I-X -> I-Y with Y != X) are forbidden. The probabilistic functions
(log-partition, score, marginals, entropy) give them :data:`FORBIDDEN_SCORE`; the decoders
give them ``-inf``, so every decoded path is valid IOB2. The learned values at forbidden
positions are never used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from smvae.spans import split_tag

logger = logging.getLogger(__name__)

# Score of a forbidden start or transition in log Z, score, marginals and entropy. One forbidden
# step makes a path exp(-1e4) times less likely. That factor underflows to exactly 0 in float32
# and float64, so forbidden paths carry no probability unless emissions differ by thousands.
# The value stays finite, so forward-backward and its gradients never compute -inf - (-inf),
# and sums of it over thousands of words stay far from float32 overflow (3.4e38).
FORBIDDEN_SCORE = -1.0e4

# Half-width of the uniform initialisation of the start, end and transition scores: small
# against emissions, so the first updates are driven by the data (our own choice).
INIT_RANGE = 0.1


def bio_allowed_transitions(tag_names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Build the IOB2 masks ``allowed_start [T]`` and ``allowed [T, T]`` (from, to).

    ``I-X`` may only follow ``B-X`` or ``I-X``; every other move, and every end, is allowed.
    Raises ValueError when a name is not ``O``, ``B-<type>`` or ``I-<type>``.
    """
    parsed = [split_tag(name) for name in tag_names]
    num_tags = len(parsed)
    allowed_start = torch.ones(num_tags, dtype=torch.bool)  # [T]
    allowed = torch.ones(num_tags, num_tags, dtype=torch.bool)  # [T_from, T_to]
    for to_index, (to_prefix, to_type) in enumerate(parsed):
        if to_prefix != "I":
            continue
        allowed_start[to_index] = False
        for from_index, (_, from_type) in enumerate(parsed):
            # O has type None, so O -> I-X is caught by the same comparison.
            allowed[from_index, to_index] = from_type == to_type
    return allowed_start, allowed


class CRF(nn.Module):
    """Linear-chain CRF with learned transition, start and end scores.

    Args:
        num_tags: number of tags ``T``.
        bio_tag_names: IOB2 names of the ``T`` tags, in index order. When given, transitions
            that break IOB2 are forbidden (see the module docstring); when None, every
            transition is allowed.
    """

    def __init__(self, num_tags: int, bio_tag_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be at least 1, got {num_tags}")
        self.num_tags = num_tags
        self.start_scores = nn.Parameter(torch.empty(num_tags))  # [T]
        self.end_scores = nn.Parameter(torch.empty(num_tags))  # [T]
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # [T_from, T_to]
        if bio_tag_names is None:
            allowed_start = torch.ones(num_tags, dtype=torch.bool)
            allowed = torch.ones(num_tags, num_tags, dtype=torch.bool)
        else:
            if len(bio_tag_names) != num_tags:
                raise ValueError(
                    f"bio_tag_names has {len(bio_tag_names)} names but num_tags is {num_tags}"
                )
            allowed_start, allowed = bio_allowed_transitions(bio_tag_names)
        self.allowed_start: Tensor
        self.allowed_transitions: Tensor
        self.register_buffer("allowed_start", allowed_start)  # [T]
        self.register_buffer("allowed_transitions", allowed)  # [T_from, T_to]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw start, end and transition scores uniformly from [-INIT_RANGE, INIT_RANGE]."""
        for parameter in (self.start_scores, self.end_scores, self.transitions):
            nn.init.uniform_(parameter, -INIT_RANGE, INIT_RANGE)

    def extra_repr(self) -> str:
        constrained = not bool(self.allowed_transitions.all() and self.allowed_start.all())
        return f"num_tags={self.num_tags}, constrained={constrained}"

    # ----------------------------------------------------------------- helpers
    def _constrained_scores(self, forbidden: float) -> tuple[Tensor, Tensor, Tensor]:
        """Return start [T], transitions [T, T] and end [T] with forbidden moves set to a value."""
        start = self.start_scores.masked_fill(~self.allowed_start, forbidden)  # [T]
        transitions = self.transitions.masked_fill(~self.allowed_transitions, forbidden)  # [T, T]
        return start, transitions, self.end_scores

    def _check_inputs(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Validate shapes and the prefix layout of ``mask``; return the mask as bool [B, N]."""
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(
                f"emissions must have shape [B, N, {self.num_tags}], got {tuple(emissions.shape)}"
            )
        if emissions.size(1) < 1:
            raise ValueError("emissions must contain at least one word per sentence (N >= 1)")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match emissions "
                f"{tuple(emissions.shape[:2])}"
            )
        mask = mask.bool()
        lengths = mask.sum(dim=1)  # [B]
        positions = torch.arange(mask.size(1), device=mask.device)  # [N]
        if not bool((lengths >= 1).all()):
            raise ValueError("every sentence must have at least one real word (mask[:, 0] True)")
        if not torch.equal(mask, positions.unsqueeze(0) < lengths.unsqueeze(1)):
            raise ValueError("mask must be True on a prefix of each row (real words first)")
        return mask

    # ----------------------------------------------------------- probabilities
    def _forward_log_alphas(
        self, emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor
    ) -> Tensor:
        """Forward recursion: alpha_i(j) = log sum of s(y_0..y_i) over prefixes with y_i = j.

        Padding positions repeat the last real word's alphas. Returns [B, N, T].
        """
        alpha = start + emissions[:, 0]  # [B, T]
        alphas = [alpha]
        for i in range(1, emissions.size(1)):
            # [B, T_from, 1] + [T_from, T_to], reduced over T_from
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1)  # [B, T]
            step = step + emissions[:, i]  # [B, T]
            alpha = torch.where(mask[:, i].unsqueeze(1), step, alpha)  # [B, T]
            alphas.append(alpha)
        return torch.stack(alphas, dim=1)  # [B, N, T]

    def _backward_log_betas(
        self, emissions: Tensor, mask: Tensor, transitions: Tensor, end: Tensor
    ) -> Tensor:
        """Backward recursion: beta_i(j) = log sum of the scores after word i given y_i = j.

        The last real word gets the end scores; padding positions hold values never used.
        Returns [B, N, T].
        """
        batch_size, num_words, num_tags = emissions.shape
        end_betas = end.expand(batch_size, num_tags)  # [B, T]
        beta = end_betas
        betas = [beta]
        for i in range(num_words - 2, -1, -1):
            following = emissions[:, i + 1] + beta  # [B, T_to]
            # [T_from, T_to] + [B, 1, T_to], reduced over T_to
            step = torch.logsumexp(transitions + following.unsqueeze(1), dim=2)  # [B, T]
            beta = torch.where(mask[:, i + 1].unsqueeze(1), step, end_betas)  # [B, T]
            betas.append(beta)
        betas.reverse()
        return torch.stack(betas, dim=1)  # [B, N, T]

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Return log Z = logsumexp over all label sequences of s(y), per sentence: [B]."""
        mask = self._check_inputs(emissions, mask)
        start, transitions, end = self._constrained_scores(FORBIDDEN_SCORE)
        alphas = self._forward_log_alphas(emissions, mask, start, transitions)  # [B, N, T]
        return torch.logsumexp(alphas[:, -1] + end, dim=1)  # [B]

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Return s(y) of the given tag ids ``tags [B, N]``, per sentence: [B].

        Values at padding positions of ``tags`` are ignored.
        """
        mask = self._check_inputs(emissions, mask)
        if tags.shape != mask.shape:
            raise ValueError(
                f"tags shape {tuple(tags.shape)} does not match mask {tuple(mask.shape)}"
            )
        tags = tags.long().masked_fill(~mask, 0)  # [B, N]
        if bool(((tags < 0) | (tags >= self.num_tags)).any()):
            raise ValueError(f"tag ids must lie in [0, {self.num_tags}) at real words")
        start, transitions, end = self._constrained_scores(FORBIDDEN_SCORE)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, N]
        emitted = emitted.masked_fill(~mask, 0.0)  # [B, N]
        moved = transitions[tags[:, :-1], tags[:, 1:]]  # [B, N-1]
        moved = moved.masked_fill(~mask[:, 1:], 0.0)  # [B, N-1]
        last_index = mask.sum(dim=1, keepdim=True) - 1  # [B, 1]
        last_tags = tags.gather(1, last_index).squeeze(1)  # [B]
        return start[tags[:, 0]] + emitted.sum(dim=1) + moved.sum(dim=1) + end[last_tags]  # [B]

    def neg_log_likelihood(
        self, emissions: Tensor, tags: Tensor, mask: Tensor, reduction: str = "mean"
    ) -> Tensor:
        """Return -log p(tags | x) = log Z - s(tags), the mean (default) or sum over sentences.

        ``reduction="none"`` returns the per-sentence values [B].
        """
        per_sentence = self.log_partition(emissions, mask) - self.score(emissions, tags, mask)
        if reduction == "mean":
            return per_sentence.mean()
        if reduction == "sum":
            return per_sentence.sum()
        if reduction == "none":
            return per_sentence
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Return p(y_i = j | x) by forward-backward: exp(alpha_i(j) + beta_i(j) - log Z).

        Returns [B, N, T], zero at padding positions. These are the gradients of
        :meth:`log_partition` with respect to the emissions.
        """
        mask = self._check_inputs(emissions, mask)
        start, transitions, end = self._constrained_scores(FORBIDDEN_SCORE)
        alphas = self._forward_log_alphas(emissions, mask, start, transitions)  # [B, N, T]
        betas = self._backward_log_betas(emissions, mask, transitions, end)  # [B, N, T]
        log_z = torch.logsumexp(alphas[:, -1] + end, dim=1)  # [B]
        log_marginals = alphas + betas - log_z[:, None, None]  # [B, N, T]
        return log_marginals.exp() * mask.unsqueeze(2)  # [B, N, T]

    def entropy(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Return the exact sequence entropy H(Y | x) = -sum_y p(y|x) log p(y|x), per sentence: [B].

        Forward recursion over the chain factorised backwards. Given y_i = b, the prefix is
        independent of the rest of the sentence and
        p(y_{i-1} = a | y_i = b) is proportional to exp(alpha_{i-1}(a) + transitions[a, b]).
        So H_i(b) = sum_a p(a | b) (H_{i-1}(a) - log p(a | b)) is the entropy of the prefix
        given y_i = b, and H = sum_b p(y_{L-1} = b) (H_{L-1}(b) - log p(y_{L-1} = b)).
        """
        mask = self._check_inputs(emissions, mask)
        start, transitions, end = self._constrained_scores(FORBIDDEN_SCORE)
        log_alpha = start + emissions[:, 0]  # [B, T]
        prefix_entropy = torch.zeros_like(log_alpha)  # [B, T]: one prefix per tag at word 0
        for i in range(1, emissions.size(1)):
            joint = log_alpha.unsqueeze(2) + transitions  # [B, T_from, T_to]
            log_norm = torch.logsumexp(joint, dim=1)  # [B, T_to]
            log_previous = joint - log_norm.unsqueeze(1)  # [B, T_from, T_to]: log p(a | b)
            step_entropy = (log_previous.exp() * (prefix_entropy.unsqueeze(2) - log_previous)).sum(
                dim=1
            )  # [B, T]
            real = mask[:, i].unsqueeze(1)  # [B, 1]
            log_alpha = torch.where(real, log_norm + emissions[:, i], log_alpha)  # [B, T]
            prefix_entropy = torch.where(real, step_entropy, prefix_entropy)  # [B, T]
        final = log_alpha + end  # [B, T]
        log_last = final - torch.logsumexp(final, dim=1, keepdim=True)  # [B, T]
        return (log_last.exp() * (prefix_entropy - log_last)).sum(dim=1)  # [B]

    # ---------------------------------------------------------------- decoding
    @torch.no_grad()
    def kbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Find the ``k`` highest-scoring label sequences by k-best Viterbi.

        Each tag keeps its ``k`` best partial paths; a step extends all ``T * k`` of them
        through every transition and keeps the ``k`` best per new tag.

        Returns:
            paths: [B, K, N] tag ids, best first; padding positions hold 0.
            scores: [B, K] path scores s(y), best first. A sentence with fewer than ``k``
                valid sequences (a one-word sentence with k > T, say) gets ``-inf`` scores in
                the remaining slots and arbitrary paths there. Computed without gradient;
                use :meth:`score` for a differentiable value.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        mask = self._check_inputs(emissions, mask)
        start, transitions, end = self._constrained_scores(float("-inf"))
        batch_size, num_words, num_tags = emissions.shape
        device = emissions.device
        # Ranked partial-path scores per (tag, rank); only rank 0 exists at the first word.
        scores = emissions.new_full((batch_size, num_tags, k), float("-inf"))  # [B, T, K]
        scores[:, :, 0] = start + emissions[:, 0]
        # Flat (tag * k + rank) index of each state, the backpointer of a padding step.
        tag_ids = torch.arange(num_tags, device=device).unsqueeze(1)  # [T, 1]
        rank_ids = torch.arange(k, device=device).unsqueeze(0)  # [1, K]
        identity = (tag_ids * k + rank_ids).expand(batch_size, num_tags, k)  # [B, T, K]
        backpointers = []
        for i in range(1, num_words):
            # candidates[b, from, rank, to] = scores[b, from, rank] + transitions[from, to]
            candidates = scores.unsqueeze(3) + transitions[None, :, None, :]  # [B, T, K, T]
            flat_candidates = candidates.reshape(batch_size, num_tags * k, num_tags)
            best, origin = flat_candidates.topk(k, dim=1)  # [B, K, T] each
            step = best.transpose(1, 2) + emissions[:, i].unsqueeze(2)  # [B, T, K]
            real = mask[:, i].view(batch_size, 1, 1)  # [B, 1, 1]
            scores = torch.where(real, step, scores)  # [B, T, K]
            backpointers.append(torch.where(real, origin.transpose(1, 2), identity))  # [B, T, K]
        final = (scores + end.view(1, num_tags, 1)).reshape(batch_size, num_tags * k)  # [B, T*K]
        best_scores, state = final.topk(k, dim=1)  # [B, K] each
        paths = self._backtrack(state, backpointers, k)  # [B, K, N]
        paths = paths.masked_fill(~mask.unsqueeze(1), 0)  # [B, K, N]
        return paths, best_scores

    @staticmethod
    def _backtrack(state: Tensor, backpointers: list[Tensor], k: int) -> Tensor:
        """Follow flat (tag * k + rank) backpointers from the final states ``state [B, K]``."""
        batch_size = state.size(0)
        tags = [state // k]  # tag at the last position, per kept path: [B, K]
        for pointers in reversed(backpointers):
            state = pointers.reshape(batch_size, -1).gather(1, state)  # [B, K]
            tags.append(state // k)
        tags.reverse()
        return torch.stack(tags, dim=2)  # [B, K, N]

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, mask: Tensor) -> tuple[list[list[int]], Tensor]:
        """Return the best label sequence of each sentence (unpadded) and its score s(y): [B].

        This is :meth:`kbest` with ``k = 1``.
        """
        paths, scores = self.kbest(emissions, mask, k=1)  # [B, 1, N], [B, 1]
        lengths = mask.bool().sum(dim=1).tolist()
        best = paths[:, 0].tolist()
        best_paths = [row[:length] for row, length in zip(best, lengths, strict=True)]
        return best_paths, scores[:, 0]
