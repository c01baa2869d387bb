"""The standard small-data protocol: train on T91 at x3, evaluate on Set5 (Y, shave 3).

EDSR-lite (8 residual blocks, 64 channels, pixel shuffle) with global residual learning, L1,
Adam 1.5e-3 with warm-up + cosine decay, batch 8 of random 144x144 HR crops (48x48 LR, the
EDSR paper's patch size) with flips/rot90, crops drawn in proportion to image area, T91 also
at 0.9/0.8/0.7/0.6 scale, weight EMA. ``--train_minutes 60`` is the protocol's budget: on the
2-core development CPU it stops near step 3,680 of 4,000 with Set5 PSNR-Y 33.71 dB
(RESULTS.md, section 3b, with the runs that led here). ``--data_dir`` is the T91 folder and
``--eval_data_dir`` the Set5 folder (defaults: the copies in ../shared/data/sr).
"""
from common import SHARED_DATA, run

RECIPE = dict(dataset='folder', input_size=48, hr_size=144, model='edsr', features=64,
              num_res_blocks=8, global_residual=True, loss='l1', learning_rate=1.5e-3,
              lr_schedule='cosine', warmup_steps=200, augment=True, crops_by_area=True,
              image_scales=(1.0, 0.9, 0.8, 0.7, 0.6), batch_size=8, patches_per_image=64,
              num_train_steps=4000, eval_every=400, ema_decay=0.999)

if __name__ == '__main__':
  set5 = SHARED_DATA / 'sr' / 'Set5'
  run('t91_x3', RECIPE, eval_data_dir=str(set5) if set5.exists() else None)
