"""RRDBNet, ESRGAN's generator, PSNR-oriented (stage 1 of ESRGAN): 23 RRDBs, 64 features, growth 32 (16.7 M parameters at x4).

L1 on 32x32 LR patches, learning rate 2e-4, EMA 0.999 of the weights, as BasicSR's
``train_RRDBNet_PSNR_x4``. Pass ``--data_dir DIV2K_train_HR/ --eval_data_dir Set5/``.
"""

from flax_sr.configs._paper_recipe import paper_recipe


def get_config(scale: int = 4) -> dict:
  return dict(paper_recipe(scale=scale, lr_patch=32, learning_rate=2e-4,
                           num_train_steps=1_000_000),
              model='rrdb', features=64, num_rrdb=23, ema_decay=0.999)
