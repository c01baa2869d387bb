"""The reference CNN with the improved recipe, x3 on STL-10 (+1.5 dB over bicubic in 15 CPU min).

The same network as reference_x3, so the gain is the recipe's: global residual learning (the
network predicts the difference to the bicubic upscale; its last layer starts at zero, so
training starts at bicubic quality), L1 loss, Adam with a 10x higher peak rate (1e-3) and
warm-up + cosine decay, flips/rot90 augmentation, and an EMA of the weights for evaluation.
"""


def get_config() -> dict:
  return dict(dataset='stl10', input_size=32, model='reference', global_residual=True,
              loss='l1', learning_rate=1e-3, lr_schedule='cosine', warmup_steps=100,
              augment=True, ema_decay=0.999, batch_size=64, num_epochs=10)
