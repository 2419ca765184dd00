"""Recurrent sentiment models for the IMDb Large Movie Review dataset (aclImdb).

from imdb_rnn import load_predictor
predictor = load_predictor()                  # the best model by validation (metrics/leaderboard.json)
predictor.probabilities(["A wonderful film."])
load_predictor(arch="gru", seed=7)            # a given architecture and seed
"""

__version__ = "0.1.0"
__all__ = ["Predictor", "load_predictor"]


def __getattr__(name):
    # imported when asked for: a stage that imports one module of the package does not load the predictor's
    if name in __all__:
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'imdb_rnn' has no attribute {name!r}")
