"""Model 1 of the original design: the reference CNN, 16x16 -> 96x96 (x6) on STL-10, its recipe."""

from flax_sr.configs import reference_x3


def get_config() -> dict:
  return dict(reference_x3.get_config(), input_size=16)
