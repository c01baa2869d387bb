"""The standard small-data protocol: train on T91 at x3, evaluate on Set5 (Y, shave 3).

EDSR-lite (8 residual blocks, 48 channels, pixel shuffle) with global residual learning, L1,
Adam 2e-3 with warm-up + cosine decay, batch 16 of random 96x96 HR crops (32x32 LR) with
flips/rot90, weight EMA. 3,400 steps: what the 2-core development CPU trained in about 60
minutes with im2col convolutions; with Winograd (the CPU default since) about 31 minutes, and
4,500 steps did not score higher (RESULTS.md, section 3b). ``--train_minutes 60`` caps it. The recipe was picked by running candidates at
their 60-CPU-minute step counts on a GPU (``experiments/device_check.sh t91sweep``; RESULTS.md).
``--data_dir`` is the T91 folder and ``--eval_data_dir`` the Set5 folder (defaults: the copies
in ../shared/data/sr).
"""
from common import SHARED_DATA, run

RECIPE = dict(dataset='folder', input_size=32, hr_size=96, model='edsr', features=48,
              num_res_blocks=8, global_residual=True, loss='l1', learning_rate=2e-3,
              lr_schedule='cosine', warmup_steps=200, augment=True, batch_size=16,
              patches_per_image=64, num_train_steps=3400, eval_every=400, ema_decay=0.999)

if __name__ == '__main__':
  set5 = SHARED_DATA / 'sr' / 'Set5'
  run('t91_x3', RECIPE, eval_data_dir=str(set5) if set5.exists() else None)
