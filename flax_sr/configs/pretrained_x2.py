"""The recipe of the shipped ``--pretrained x2`` weights: pretrained_x3's at x2 (48x48 LR crops),
10,000 steps (experiments/RESULTS.md, section 3)."""

from flax_sr.configs import pretrained_x3


def get_config() -> dict:
  return pretrained_x3.get_config(scale=2, num_train_steps=10000, eval_every=2000,
                                  train_minutes=None)
