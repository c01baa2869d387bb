"""T91 + BSD200 (the "291" set) -> Set5 x3 in 60 minutes of a 2-core CPU: EDSR-lite 64x8.

The recipe of ``t91_x3`` with the 291 images VDSR and DRRN trained on: pass ``--data_dir
T91/,BSD200/ --eval_data_dir Set5/`` (several folders, comma-separated, train together).
EDSR-lite (8 residual blocks, 64 channels, pixel shuffle) with global residual learning, L1,
Adam 1.5e-3 with warm-up + cosine decay over 4,000 steps, batch 8 of random 144x144 HR crops
(48x48 LR) with flips/rot90, crops drawn in proportion to image area, every image also at
0.9/0.8/0.7/0.6 scale, weight EMA. experiments/RESULTS.md, section 3c, has what it reached.
"""
from flax_sr.configs import t91_x3


def get_config() -> dict:
  return t91_x3.get_config()
