"""The recipe of the shipped ``--pretrained x3`` weights: EDSR 64x12 with the pixel-shuffle-
direct upsampler, trained on the 291 images (T91 + BSD200) on a 2-core CPU.

Exactly what trained them (``flax_sr/pretrained/x3.json`` holds the same config): pass
``--data_dir T91/,BSD200/ --eval_data_dir Set5/``. It is ``sr291_x3`` (L1, Adam 1.5e-3 with
warm-up + cosine, the gradient clipped at norm 0.05, batch 8 of 48x48 LR crops, EMA; 12
residual blocks, one convolution straight to the RGB sub-pixels) with 12,000 steps instead of
14,000: 49.2 training minutes on a 2-core AMD EPYC, Set5 x3 PSNR-Y 33.798 dB. The final weights
are shipped, so Set5 did not choose them (experiments/RESULTS.md, sections 3 and 3d). The
architecture is spelled out here too, so that this stays the shipped recipe if ``sr291_x3``
changes.
"""
from flax_sr.configs import sr291_x3


def get_config(scale: int = 3, num_train_steps: int = 12000, eval_every: int = 400,
               train_minutes: float | None = 60.0) -> dict:
  return dict(sr291_x3.get_config(scale), upsampler='pixelshuffledirect', num_res_blocks=12,
              channel_attention=0, num_train_steps=num_train_steps, eval_every=eval_every,
              train_minutes=train_minutes)
