"""Real-ESRGAN-style training at CPU size: Real-ESRGAN's compact SRVGGNet (32 features, 8 body convolutions) trained with L1 on T91 crops degraded by Real-ESRGAN's second-order pipeline, x4.

The realistic half of ``experiments/realesrgan_x4.py``, which trains the same recipe with
``degradation='bicubic'`` beside it and compares both on realistically degraded Set5. LR made
on the device from each batch (Real-ESRGAN's default ranges), batch 16 of 96x96 HR crops
(24x24 LR), flips/rot90, Adam 5e-4 with warm-up + cosine decay, weight EMA. Pass
``--data_dir T91/ --eval_data_dir Set5/``.
"""


def get_config() -> dict:
  return dict(dataset='folder', input_size=24, hr_size=96, model='srvgg', features=32,
              num_res_blocks=8, loss='l1', learning_rate=5e-4, lr_schedule='cosine',
              warmup_steps=100, augment=True, crops_by_area=True, batch_size=16,
              patches_per_image=64, num_train_steps=3000, eval_every=500, ema_decay=0.999,
              degradation='realesrgan')
