"""The recipe of the shipped ``--pretrained x4`` weights (session 21): EDSR 64x12 with the
pixel-shuffle-direct upsampler and no channel attention, trained on the 291 images (48x48 LR
crops, 192x192 HR) for 10,000 steps: 43.9 training minutes on a 2-core AMD EPYC, Set5 x4 PSNR-Y
31.571 dB (experiments/RESULTS.md, section 3). It is ``sr291_x4`` before that preset gained
channel attention (session 23), spelled out so that it stays the shipped recipe if ``sr291_x3``
changes.
"""
from flax_sr.configs import sr291_x3


def get_config(scale: int = 4) -> dict:
  return dict(sr291_x3.get_config(scale), upsampler='pixelshuffledirect', num_res_blocks=12,
              channel_attention=0, num_train_steps=10000, eval_every=2000, train_minutes=None)
