"""T91 + BSD200 (the "291" set) -> Set5 x4: sr291_x3's recipe at x4 (48x48 LR crops)."""

from flax_sr.configs import sr291_x3


def get_config() -> dict:
  return sr291_x3.get_config(scale=4)
