"""The reference CNN with the improved recipe (see improved_x3), x6 on STL-10."""

from flax_sr.configs import improved_x3


def get_config() -> dict:
  return dict(improved_x3.get_config(), input_size=16)
