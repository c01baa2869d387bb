"""SwinIR classical SR (Liang et al. 2021): 6 residual Swin blocks x 6 layers, 180 wide, 6 heads, window 8 (11.9 M parameters at x4).

Trained on 64x64 LR patches, batch 32, learning rate 2e-4 as the paper's DIV2K model. Pass
``--data_dir DIV2K_train_HR/ --eval_data_dir Set5/``; other scales: ``--hr_size 128`` (x2) or
``192`` (x3).
"""

from flax_sr.configs._paper_recipe import paper_recipe


def get_config(scale: int = 4) -> dict:
  return dict(paper_recipe(scale=scale, lr_patch=64, batch_size=32, learning_rate=2e-4,
                           num_train_steps=500_000),
              model='swinir', features=180, depths=(6,) * 6, num_heads=(6,) * 6, window_size=8,
              mlp_ratio=2.0, upsampler='pixelshuffle', resi_connection='1conv')
