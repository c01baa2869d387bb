"""EDSR (Lim et al. 2017) as in the paper: 32 residual blocks x 256 features, residual scaling 0.1 (43 M parameters at x4).

The paper's full model, beside the baseline (``--model edsr`` alone: 16 x 64, scaling 1).
Pass ``--data_dir DIV2K_train_HR/ --eval_data_dir Set5/``; other scales: ``--hr_size 96``
(x2) or ``144`` (x3) with the same ``--input_size 48``.
"""

from flax_sr.configs._paper_recipe import paper_recipe


def get_config(scale: int = 4) -> dict:
  return dict(paper_recipe(scale=scale), model='edsr', features=256, num_res_blocks=32,
              res_scale=0.1)
