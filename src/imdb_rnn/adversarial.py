"""Perturbation terms on the word embeddings: adversarial training (Goodfellow et al., 2015; Miyato et al., 2017)."""


class EmbeddingAttack:
    """Adversarial training on the word embeddings (Goodfellow et al., 2015; Miyato et al., 2017).

    A forward hook on the embedding keeps the gradient of its output ([T, B, E], time-major) in the
    clean pass. `backward` then runs the model again with each review's embedded tokens moved by
    the perturbation that raises the loss most to first order (the gradient, normalised per
    review) and adds the gradient of that loss. Its norm is `epsilon` times the review's own
    embedding norm, so that growing the embedding weights cannot make the attack vanish.
    """

    def __init__(self, embedding, epsilon):
        self.epsilon, self.embedded, self.delta = epsilon, None, None
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.delta is not None:
            return output + self.delta
        if module.training:
            if not output.requires_grad:  # a frozen embedding: the attack still needs this gradient
                output = output.detach().requires_grad_()
            output.retain_grad()
            self.embedded = output
            return output
        return None

    def backward(self, adversarial_loss):
        """Add the gradient of adversarial_loss() (a closure running the model) under the attack."""
        grad, embedded = self.embedded.grad, self.embedded.detach()
        per_review = (0, 2)
        scale = self.epsilon * embedded.norm(dim=per_review, keepdim=True) / grad.norm(dim=per_review, keepdim=True).clamp_min(1e-12)
        self.delta, self.embedded = (grad * scale).detach(), None
        try:
            adversarial_loss().backward()
        finally:
            self.delta = None

    def remove(self):
        self.handle.remove()
