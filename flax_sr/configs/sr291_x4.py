"""T91 + BSD200 (the "291" set) -> Set5 x4: sr291_x3's recipe at x4 (48x48 LR crops).

Session 26, seed 0, a 2-core AMD EPYC (Zen 4): the 13,000 steps in 47.3 training minutes, Set5
x4 PSNR-Y 31.780 dB; the shipped ``--pretrained x4`` (experiments/RESULTS.md, section 3).
"""

from flax_sr.configs import sr291_x3


def get_config() -> dict:
  return sr291_x3.get_config(scale=4)
