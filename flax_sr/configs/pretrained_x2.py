"""The recipe of the shipped ``--pretrained x2`` weights (pretrained_x3's, 48x48 LR crops)."""

from flax_sr.configs import pretrained_x3


def get_config() -> dict:
  return pretrained_x3.get_config(input_size=48)
