"""T91 + BSD200 (the "291" set) -> Set5 x2: sr291_x3's recipe at x2 (48x48 LR crops).

Session 26, seed 0, a 2-core AMD EPYC (Zen 4): the 13,000 steps in 53.1 training minutes, Set5
x2 PSNR-Y 37.714 dB; the shipped ``--pretrained x2`` (experiments/RESULTS.md, section 3).
"""

from flax_sr.configs import sr291_x3


def get_config() -> dict:
  return sr291_x3.get_config(scale=2)
