"""The mixed objective: virtual adversarial training, entropy minimisation and unlabelled batches."""

import numpy as np
import pytest
import test_train
import torch
from test_train import CLEAN, COMMON, TOKENIZE, marker_reviews, small_arch
from tiny_model import configs

from imdb_rnn.adversarial import (
    EmbeddingPerturbation,
    entropy,
    kl_bernoulli,
    per_review,
    random_state,
    replayed,
    virtual_adversarial_loss,
)
from imdb_rnn.batches import Reviews, align_left
from imdb_rnn.config import ModelConfig
from imdb_rnn.text import tokenize
from imdb_rnn.train import fingerprint, fit, unlabelled_batches

pytestmark = pytest.mark.usefixtures("one_thread")

marker_data = test_train.marker_data  # test_train's module-scoped fixture, requested here by name


def unlabelled_set(vocab, n=300, seed=3):
    texts, _ = marker_reviews(n, seed)
    ids, kept, _ = tokenize(texts, vocab, CLEAN, TOKENIZE)
    return Reviews(align_left(ids, kept, TOKENIZE["pad_side"]), kept, np.full(n, -1))


def model_and_batch(vocab, train, dropout=0.3):
    torch.manual_seed(0)
    model = (
        ModelConfig.from_dict(
            {**small_arch("bilstm", dropout=dropout, embed_dropout=dropout), "vocab_size": len(vocab)}
        )
        .build()
        .train()
    )
    for _ in range(3):  # a few plain steps, so that predictions are not all near 0.5
        ids, lengths, labels = train.batch(np.arange(64), "cpu")
        torch.nn.functional.binary_cross_entropy_with_logits(model(ids, lengths), labels).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
                p.grad = None
    return model, train.batch(np.arange(32), "cpu")


@pytest.mark.parametrize("eps", [0.0, 0.05])
def test_virtual_adversarial_perturbation_has_the_asked_norm_and_only_moves_real_tokens(marker_data, eps):
    vocab, train, _ = marker_data
    model, (ids, lengths, _) = model_and_batch(vocab, train)
    perturbation = EmbeddingPerturbation(model.embedding)
    state = random_state(torch.device("cpu"))
    logits = model(ids, lengths)
    clean = perturbation.take()
    seen = []
    hook = model.embedding.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    term = virtual_adversarial_loss(perturbation, clean, logits, eps, lambda: model(ids, lengths), state)
    hook.remove()
    perturbation.remove()
    embedded, real = clean[0].detach(), clean[1]
    r_vadv = seen[-1] - embedded  # the last pass is the term's, under r_vadv
    per = r_vadv.norm(dim=(0, 2)) / embedded.norm(dim=(0, 2))
    assert torch.allclose(per, torch.full_like(per, eps), atol=1e-6)
    assert float(r_vadv[~real].abs().max()) == 0.0  # padding is never moved
    if eps == 0:
        assert term.item() == 0.0  # same dropout masks, no perturbation: exactly no divergence
    else:
        assert term.item() > 0
        # the power iteration's direction moves the prediction more than a random one of the same size
        noise = per_review(torch.randn_like(embedded) * real.unsqueeze(-1), embedded, eps)
        perturbation = EmbeddingPerturbation(model.embedding)
        with torch.no_grad(), perturbation.moved(noise), replayed(state):
            randomly = kl_bernoulli(logits.detach(), model(ids, lengths)).item()
        perturbation.remove()
        assert term.item() > 2 * randomly
    assert not model.embedding._forward_hooks


def test_entropy_term_has_the_sign_that_lowers_entropy():
    logits = torch.tensor([-2.0, -0.3, 0.4, 3.0], requires_grad=True)
    before = entropy(logits)
    before.backward()
    # gradient descent pushes each prediction away from 0.5
    assert (logits.grad.sign() == -logits.detach().sign()).all()
    after = entropy(logits.detach() - 0.5 * logits.grad)
    assert after < before
    p = torch.sigmoid(logits.detach())
    assert torch.isclose(before, -(p * p.log() + (1 - p) * (1 - p).log()).mean())


def test_unlabelled_batches_are_fresh_each_epoch_and_the_asked_size(marker_data):
    vocab, train, _ = marker_data
    unlabelled = unlabelled_set(vocab, n=50)
    config = configs(small_arch("bilstm", unsup_ratio=0.5, vat_eps=0.02), len(vocab), COMMON)[1]
    first, second = unlabelled_batches(unlabelled, 20, config, 1), unlabelled_batches(unlabelled, 20, config, 2)
    # 0.5 x batch_size 16; 50 reviews make 6 batches of 8 and one of 2 per pass, and 20 batches need three passes
    assert len(first) == 20 and sorted(map(len, first))[3:] == [8] * 17
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))
    assert all(np.array_equal(a, b) for a, b in zip(first, unlabelled_batches(unlabelled, 20, config, 1)))


def test_mixed_objective_learns_the_marker_task_and_every_term_changes_training(marker_data):
    vocab, train, val = marker_data
    unlabelled = unlabelled_set(vocab)
    runs = {}
    for label, change in {
        "plain": {},
        "vat": {"vat_eps": 0.05},
        "entropy": {"entropy_weight": 1.0, "unsup_ratio": 1},
        "mixed": {"adversarial_eps": 0.05, "vat_eps": 0.05, "entropy_weight": 1.0, "unsup_ratio": 1},
    }.items():
        params = small_arch("bilstm", **change)
        torch.manual_seed(0)
        model = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
        state, history, summary, _ = fit(
            model,
            train,
            val,
            configs(params, len(vocab), COMMON)[1],
            torch.device("cpu"),
            name=label,
            unlabelled=unlabelled,
        )
        assert summary["val_accuracy"] >= 0.9, (label, history)
        assert not model.embedding._forward_hooks
        runs[label] = fingerprint(*state.values())
    assert len(set(runs.values())) == len(runs)


def test_unlabelled_reviews_given_but_unused_leave_training_as_it_was(marker_data):
    vocab, train, val = marker_data
    params = small_arch("bilstm", epochs=2)
    digests = []
    for unlabelled in (None, unlabelled_set(vocab)):
        torch.manual_seed(0)
        model = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
        state, *_ = fit(
            model, train, val, configs(params, len(vocab), COMMON)[1], torch.device("cpu"), unlabelled=unlabelled
        )
        digests.append(fingerprint(*state.values()))
    assert digests[0] == digests[1]
