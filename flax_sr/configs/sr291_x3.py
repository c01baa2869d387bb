"""T91 + BSD200 (the "291" set) -> Set5 x3 in 60 minutes of a 2-core CPU: EDSR 64x12 with
channel attention, 34.03 dB.

The best recipe found for it so far (issue #24, experiments/RESULTS.md sections 3c and 3d):
pass ``--data_dir T91/,BSD200/ --eval_data_dir Set5/ --train_minutes 60`` (several folders,
comma-separated, train together). EDSR with 12 residual blocks of 64 channels, each closed by
RCAN's channel attention (reduction 16), and one convolution straight to the RGB sub-pixels
(pixel-shuffle direct: EDSR's own x3 upsampler would hold a third of the multiply-adds), global
residual learning, L1, Adam 1.5e-3 with warm-up + cosine decay over 13,000 steps, the gradient
clipped to global norm 0.05 (without it a loss spike near the end of the warm-up can cost a run
over 1 dB), batch 8 of random 48x48 LR crops (144x144 HR) with flips/rot90, crops drawn in
proportion to image area, every image also at 0.9/0.8/0.7/0.6 scale, weight EMA. On a 2-core
AMD EPYC (Zen 4): the 13,000 steps in 58.0 / 55.7 training minutes, Set5 x3 PSNR-Y
34.028 / 33.983 dB with seeds 0 / 1 (sessions 24 / 25; 10,800 / 11,800 steps gave 33.975 /
33.989 with seed 0). On a slower CPU the
``--train_minutes`` budget stops the schedule early, where the learning rate is already small.

``sr291_x2``/``sr291_x4`` are the same at x2/x4, with 48x48 LR crops too (96/192 HR), as EDSR
trains every scale. The earlier recipes are flags away: session 22's (no channel attention,
14,000 steps; 33.805 / 33.858 dB over two seeds) is ``--channel_attention 0 --num_train_steps
14000``, and section 3c's EDSR-lite 64x8 (33.66 dB) is that plus ``--upsampler pixelshuffle
--num_res_blocks 8 --num_train_steps 4000``.
"""
from flax_sr.configs import t91_x3

LR_PATCH = 48
GRAD_CLIP_NORM = 0.05  # about twice the usual gradient norm of this model


def get_config(scale: int = 3) -> dict:
  return dict(t91_x3.get_config(), input_size=LR_PATCH, hr_size=LR_PATCH * scale,
              grad_clip_norm=GRAD_CLIP_NORM, upsampler='pixelshuffledirect',
              num_res_blocks=12, channel_attention=16, num_train_steps=13000)
