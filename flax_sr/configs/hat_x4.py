"""HAT (Chen et al. 2023): 6 residual hybrid attention groups x 6 blocks, 180 wide, window 16, overlapping cross-attention (20.8 M parameters at x4).

SwinIR's window attention plus a channel-attention convolution branch in every block and an
overlapping cross-attention block per group. Trained on 64x64 LR patches, batch 32, learning
rate 2e-4 as the paper (which pre-trains on ImageNet first). Pass ``--data_dir
DIV2K_train_HR/ --eval_data_dir Set5/``; other scales: ``--hr_size 128`` (x2) or ``192`` (x3).
"""

from flax_sr.configs._paper_recipe import paper_recipe


def get_config(scale: int = 4) -> dict:
  return dict(paper_recipe(scale=scale, lr_patch=64, batch_size=32, learning_rate=2e-4,
                           num_train_steps=500_000),
              model='hat', features=180, depths=(6,) * 6, num_heads=(6,) * 6, window_size=16,
              mlp_ratio=2.0, compress_ratio=3, squeeze_factor=30, overlap_ratio=0.5,
              resi_connection='1conv')
