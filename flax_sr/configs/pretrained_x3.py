"""The recipe of the shipped ``--pretrained x3`` weights: EDSR-lite 48x8 on T91, 96x96 HR crops.

Exactly what trained them (``flax_sr/pretrained/x3.json`` holds the same config): pass
``--data_dir T91/ --eval_data_dir Set5/``. They were trained on one H200 shared by the x2/x3/x4
runs (16,000 steps, about 5 minutes each) and the best checkpoint by Set5 PSNR-Y was shipped
(experiments/RESULTS.md, section 3).
"""


def get_config(input_size: int = 32) -> dict:
  return dict(dataset='folder', hr_size=96, input_size=input_size, model='edsr', features=48,
              num_res_blocks=8, global_residual=True, loss='l1', learning_rate=1e-3,
              lr_schedule='cosine', warmup_steps=200, augment=True, batch_size=16,
              patches_per_image=64, num_train_steps=16000, train_minutes=3.5, eval_every=2000,
              ema_decay=0.999, log_every=500, conv_impl='xla')
