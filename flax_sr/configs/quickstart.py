"""The first run: EDSR-lite 32x4 on the embedded sample photos, x3, about 2.5 minutes on 2 CPU cores.

No download (the photos ship inside scikit-image). Global residual learning (the network starts
at bicubic quality), L1, Adam 2e-3 with warm-up + cosine decay, batch 16 of whole 96x96 crops
with flips/rot90, weight EMA; 400 steps, evaluated on the held-out photos at steps 200 and 400.
"""


def get_config() -> dict:
  return dict(dataset='sample', input_size=32, model='edsr', features=32, num_res_blocks=4,
              global_residual=True, loss='l1', learning_rate=2e-3, lr_schedule='cosine',
              warmup_steps=20, augment=True, batch_size=16, num_train_steps=400, eval_every=200,
              ema_decay=0.99, log_every=50)
