"""The recipe of the shipped ``--pretrained x4`` weights (session 21): pretrained_x2's at x4
(48x48 LR crops, 192x192 HR), 10,000 steps: 43.9 training minutes on a 2-core AMD EPYC, Set5 x4
PSNR-Y 31.571 dB (experiments/RESULTS.md, section 3)."""

from flax_sr.configs import pretrained_x2


def get_config() -> dict:
  return pretrained_x2.get_config(scale=4)
