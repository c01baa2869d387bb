"""T91 + BSD200 (the "291" set) -> Set5 x3 in 60 minutes of a 2-core CPU: EDSR-lite 64x8.

The recipe of ``t91_x3`` with the 291 images VDSR and DRRN trained on, and the gradient
clipped: pass ``--data_dir T91/,BSD200/ --eval_data_dir Set5/`` (several folders,
comma-separated, train together). EDSR-lite (8 residual blocks, 64 channels, pixel shuffle)
with global residual learning, L1, Adam 1.5e-3 with warm-up + cosine decay over 4,000 steps,
the gradient clipped to global norm 0.05 (without it a loss spike near the end of the warm-up
can cost a run over 1 dB), batch 8 of random 48x48 LR crops
(144x144 HR) with flips/rot90, crops drawn in proportion to image area, every image also at
0.9/0.8/0.7/0.6 scale, weight EMA. ``sr291_x2``/``sr291_x4`` are the same at x2/x4, with 48x48
LR crops too (96/192 HR), as EDSR trains every scale. experiments/RESULTS.md, section 3c, has
what they reached.
"""
from flax_sr.configs import t91_x3

LR_PATCH = 48
GRAD_CLIP_NORM = 0.05  # about twice the usual gradient norm of this model


def get_config(scale: int = 3) -> dict:
  return dict(t91_x3.get_config(), input_size=LR_PATCH, hr_size=LR_PATCH * scale,
              grad_clip_norm=GRAD_CLIP_NORM)
