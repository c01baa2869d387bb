"""T91 -> Set5 x3 in 60 minutes of a 2-core CPU: EDSR-lite 64x8, 33.71 dB on Set5.

The standard small-data protocol: pass ``--data_dir T91/ --eval_data_dir Set5/``. EDSR-lite
(8 residual blocks, 64 channels, pixel shuffle) with global residual learning, L1, Adam 1.5e-3
with warm-up + cosine decay, batch 8 of random 144x144 HR crops (48x48 LR, the EDSR paper's
patch size) with flips/rot90, crops drawn in proportion to image area, T91 also at
0.9/0.8/0.7/0.6 scale, weight EMA. With ``--train_minutes 60`` it stops near step 3,680 of
4,000 (experiments/RESULTS.md, section 3b).
"""


def get_config() -> dict:
  return dict(dataset='folder', input_size=48, hr_size=144, model='edsr', features=64,
              num_res_blocks=8, global_residual=True, loss='l1', learning_rate=1.5e-3,
              lr_schedule='cosine', warmup_steps=200, augment=True, crops_by_area=True,
              image_scales=(1.0, 0.9, 0.8, 0.7, 0.6), batch_size=8, patches_per_image=64,
              num_train_steps=4000, eval_every=400, ema_decay=0.999)
