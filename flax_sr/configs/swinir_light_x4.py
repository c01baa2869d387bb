"""SwinIR lightweight SR: 4 residual Swin blocks x 6 layers, 60 wide, window 8, one pixel-shuffle convolution (0.9 M parameters at x4).

Trained on 64x64 LR patches, batch 64, learning rate 2e-4, as the paper's lightweight models.
"""

from flax_sr.configs._paper_recipe import paper_recipe


def get_config(scale: int = 4) -> dict:
  return dict(paper_recipe(scale=scale, lr_patch=64, batch_size=64, learning_rate=2e-4,
                           num_train_steps=500_000),
              model='swinir', features=60, depths=(6,) * 4, num_heads=(6,) * 4, window_size=8,
              mlp_ratio=2.0, upsampler='pixelshuffledirect', resi_connection='1conv')
