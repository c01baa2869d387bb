"""The recipe of the shipped ``--pretrained x4`` weights: ``sr291_x4`` (EDSR 64x12 with channel
attention and the pixel-shuffle-direct upsampler) trained on the 291 images (T91 + BSD200; 48x48
LR crops, 192x192 HR) on a 2-core CPU.

Exactly what trained them (``flax_sr/pretrained/x4.json`` holds the same config): pass
``--data_dir T91/,BSD200/ --eval_data_dir Set5/``. Session 26, seed 0, a 2-core AMD EPYC:
13,000 steps in 47.3 training minutes, Set5 x4 PSNR-Y 31.780 dB. The final weights are
shipped, so Set5 did not choose them (experiments/RESULTS.md, section 3). Until session 25 the
shipped x4 was session 21's run without channel attention (``--channel_attention 0
--num_train_steps 10000``, 31.571 dB). The architecture is spelled out here too, so that this
stays the shipped recipe if ``sr291_x3`` changes.
"""
from flax_sr.configs import sr291_x3


def get_config(scale: int = 4) -> dict:
  return dict(sr291_x3.get_config(scale), upsampler='pixelshuffledirect', num_res_blocks=12,
              channel_attention=16, num_train_steps=13000, eval_every=2000, train_minutes=60.0)
