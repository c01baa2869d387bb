"""SPAN (Wan et al. 2024, NTIRE 2024 efficient SR): 6 parameter-free attention blocks of re-parameterised convolutions, 48 features.

Trained with L1 on 48x48 LR patches here (the challenge entry was trained in stages on
DIV2K + LSDIR); the re-parameterisation is merged inside every call, so training and
inference run the same single 3x3 convolution per layer.
"""

from flax_sr.configs._paper_recipe import paper_recipe


def get_config(scale: int = 4) -> dict:
  return dict(paper_recipe(scale=scale, batch_size=64, learning_rate=5e-4), model='span',
              features=48)
