"""RCAN (Zhang et al. 2018): 10 residual groups x 20 channel-attention blocks, 64 features, reduction 16 (15.6 M parameters at x4).

Its input is [0, 255] minus DIV2K's mean, as the original's. Pass ``--data_dir DIV2K_train_HR/
--eval_data_dir Set5/``; other scales: ``--hr_size 96`` (x2) or ``144`` (x3).
"""

from flax_sr.configs._paper_recipe import paper_recipe


def get_config(scale: int = 4) -> dict:
  return dict(paper_recipe(scale=scale), model='rcan', features=64, num_groups=10,
              num_rcab=20, reduction=16)
