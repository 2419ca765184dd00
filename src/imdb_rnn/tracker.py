"""What a training run keeps between epochs: validation figures, the best epoch and its weights, early
stopping, and the moving average of the weights."""

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import MONITORS
from .inference import count_parameters, loss_and_accuracy, predict_logits


def snapshot(module):
    """A copy of `module`'s state_dict on the CPU ({name: tensor}), which later steps do not change."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class Tracker:
    """Validation after every epoch, the best epoch by config.monitor and its weights, and early stopping.

    The best epoch is the first with the lowest validation loss (monitor val_loss) or the highest
    validation accuracy (val_accuracy); training stops after config.patience epochs without a better one.

    With config.ema_decay > 0 the weights validated, compared and kept are an exponential moving
    average (EMA) of the trained ones, a form of Polyak averaging (torch.optim.swa_utils.AveragedModel
    with get_ema_multi_avg_fn), updated after every optimiser step (`step`); val_loss and
    val_accuracy, and so early stopping, are the average's. Each history row then also gives the
    trained weights' own figures (val_loss_raw, val_accuracy_raw; a second validation pass an epoch),
    which for every epoch both run are those of the same run without the average. The average starts
    as a copy of `model`: create the tracker before any hook is registered on it.

    `val` is the validation split (batches.Reviews), scored in batches of config.eval_batch_size on `device`.
    """

    def __init__(self, model, val, config, device):
        self.model, self.val, self.config, self.device = model, val, config, device
        self.averaged = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
            if config.ema_decay
            else None
        )
        self.scored = self.averaged.module if self.averaged else model  # what validation scores and the run keeps
        self.best, self.best_state, self.history, self.stale = None, None, [], 0

    def step(self):
        """After every optimiser step: the average takes in the new weights."""
        if self.averaged:
            self.averaged.update_parameters(self.model)

    def validate(self, module):
        logits = predict_logits(module, self.val, self.config.eval_batch_size, self.device)
        return loss_and_accuracy(logits, self.val.labels)

    def end_epoch(self, epoch, train_loss, train_accuracy, seconds, tokens):
        """The epoch's history row ({epoch, train_loss, train_accuracy, val_loss, val_accuracy, seconds,
        tokens_per_second}, plus the raw figures with an average), validated and added to the history."""
        val_loss, val_accuracy = self.validate(self.scored)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": seconds,
            "tokens_per_second": tokens / seconds,
        }
        if self.averaged:
            row["val_loss_raw"], row["val_accuracy_raw"] = self.validate(self.model)
        self.history.append(row)
        return row

    def should_stop(self, row):
        """Keep `row`'s weights if its epoch is the best so far; True once config.patience epochs were not."""
        monitor = self.config.monitor
        if self.best is None or (
            row[monitor] > self.best[monitor] if MONITORS[monitor] else row[monitor] < self.best[monitor]
        ):
            self.best, self.stale = row, 0
            self.best_state = snapshot(self.scored)
        else:
            self.stale += 1
        return self.stale >= self.config.patience

    def summary(self):
        """The best epoch's figures, rounded, and the model's parameter count."""
        best = self.best
        return {
            "best_epoch": best["epoch"],
            "epochs_run": len(self.history),
            "val_loss": round(best["val_loss"], 6),
            "val_accuracy": round(best["val_accuracy"], 6),
            "train_loss": round(best["train_loss"], 6),
            "train_accuracy": round(best["train_accuracy"], 6),
            "parameters": count_parameters(self.model),
        }

    def state_dict(self):
        return {
            "averaged": self.averaged.state_dict() if self.averaged else None,
            "best": self.best,
            "best_state": self.best_state,
            "history": self.history,
            "stale": self.stale,
        }

    def load_state_dict(self, saved):
        if self.averaged:
            self.averaged.load_state_dict(saved["averaged"])
        self.best, self.best_state, self.history, self.stale = (
            saved["best"],
            saved["best_state"],
            saved["history"],
            saved["stale"],
        )
