"""ESRGAN stage 1 at CPU size: a small RRDBNet (32 features, 5 RRDBs) (2.11 M parameters at x4) trained with L1 on T91 crops, x4.

The PSNR-oriented model that stage 2 (``esrgan_cpu_gan_x4``) fine-tunes adversarially; both
run from ``experiments/esrgan_x4.py``. ESRGAN's architecture and loss at a size a 2-core CPU
trains in minutes: batch 16 of 96x96 HR crops (24x24 LR), flips/rot90, Adam 5e-4 with
warm-up + cosine decay over 700 steps (about the 15 minutes ``experiments/esrgan_x4.py`` gives
it on a 2-core CPU, so the decay ends inside the budget), weight EMA. Pass
``--data_dir T91/ --eval_data_dir Set5/``.
"""


def get_config() -> dict:
  return dict(dataset='folder', input_size=24, hr_size=96, model='rrdb', features=32,
              num_rrdb=5, loss='l1', learning_rate=5e-4, lr_schedule='cosine', warmup_steps=100,
              augment=True, crops_by_area=True, batch_size=16, patches_per_image=64,
              num_train_steps=700, eval_every=500, ema_decay=0.999)
