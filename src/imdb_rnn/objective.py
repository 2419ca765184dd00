"""The training objective: cross entropy on the labelled batch plus the terms a TrainConfig switches on, one
method per term (the terms' mathematics is adversarial.py's).

With every term off a step is plain cross entropy, and the run is that of a model without these options.
"""

import torch
from torch import nn

from .adversarial import EmbeddingPerturbation, adversarial_loss, entropy, random_state, virtual_adversarial_loss


class Objective:
    """The loss of one training step, as Sachan, Zaheer & Salakhutdinov's mixed objective (AAAI 2019) sums it:

    - `cross_entropy`: binary cross entropy of the labelled batch's logits (always);
    - `adversarial`: the labelled batch's loss with its embeddings moved against the gradient
      (config.adversarial_eps; Goodfellow et al. 2015, Miyato et al. 2017);
    - `virtual_adversarial`: the KL divergence of a batch's predictions under the most sensitive small
      move of its embeddings, times config.vat_weight (config.vat_eps; Miyato, Dai & Goodfellow 2017),
      on the labelled batch and on the unlabelled one;
    - `entropy`: the unlabelled batch's prediction entropy, times config.entropy_weight (Grandvalet &
      Bengio 2005).

    `model` is the classifier (its embedding carries the perturbation hook; it probes virtual
    adversarial directions), `trained` the module the steps run through (the model, or its
    DistributedDataParallel wrapper). Every forward pass runs under bfloat16 autocast when
    `precision` is "bfloat16" (float32 weights, optimiser and loss). Create it after anything that
    copies the model (train.Tracker's average): the hook must not be copied.
    """

    def __init__(self, model, trained, config, device, precision):
        self.model, self.trained, self.config, self.device = model, trained, config, device
        self.bfloat16 = precision == "bfloat16"
        self.loss_fn = nn.BCEWithLogitsLoss()
        perturbed = config.adversarial_eps or config.vat_eps
        self.perturbation = (
            EmbeddingPerturbation(model.embedding, keep_grad=bool(config.adversarial_eps)) if perturbed else None
        )

    def forward(self, module, ids, lengths):
        """A closure that runs `module` on the batch (ids [B, T], lengths [B]) and returns float32 logits [B]."""

        def run():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
                return module(ids, lengths).float()

        return run

    def cross_entropy(self, ids, lengths, labels):
        """(loss, logits [B]) of the labelled batch; keeps what the later terms of this step need."""
        self.state = random_state(self.device) if self.config.vat_eps else None  # the clean pass's dropout
        self.batch = ids, lengths, labels
        self.logits = self.forward(self.trained, ids, lengths)()
        loss = self.loss_fn(self.logits, labels)
        self.clean = self.perturbation.take() if self.perturbation else None
        return loss, self.logits

    def adversarial(self):
        ids, lengths, labels = self.batch
        return adversarial_loss(
            self.perturbation,
            self.clean[0],
            self.config.adversarial_eps,
            lambda: self.loss_fn(self.forward(self.trained, ids, lengths)(), labels),
        )

    def virtual_adversarial(self, clean, logits, ids, lengths, state):
        forward, probe = self.forward(self.trained, ids, lengths), self.forward(self.model, ids, lengths)
        loss = virtual_adversarial_loss(self.perturbation, clean, logits, self.config.vat_eps, forward, state, probe)
        return self.config.vat_weight * loss

    def entropy(self, logits):
        return self.config.entropy_weight * entropy(logits)

    def other_terms(self, unlabelled=None, rows=None):
        """The backward passes of the terms after cross entropy, for optim.optimizer_step to call after
        the cross entropy's own (None when every term is off). `rows` of `unlabelled` (batches.Reviews)
        are the step's unlabelled batch, or None."""
        if not self.perturbation and rows is None:
            return None

        def backward():
            # each term's pass is followed by its own backward: DDP reduces gradients per pass
            if self.config.adversarial_eps:
                self.adversarial().backward()
            if self.config.vat_eps:
                ids, lengths, _ = self.batch
                self.virtual_adversarial(self.clean, self.logits, ids, lengths, self.state).backward()
            if rows is not None:
                ids, lengths, _ = unlabelled.batch(rows, self.device)
                state = random_state(self.device)
                with torch.set_grad_enabled(bool(self.config.entropy_weight)):
                    logits = self.forward(self.trained, ids, lengths)()
                clean = self.perturbation.take() if self.perturbation else None
                if self.config.entropy_weight:
                    self.entropy(logits).backward()
                if self.config.vat_eps:
                    self.virtual_adversarial(clean, logits, ids, lengths, state).backward()

        return backward

    def remove(self):
        """Take the perturbation hook off the model."""
        if self.perturbation:
            self.perturbation.remove()
