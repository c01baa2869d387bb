"""The training recipe the zoo's papers share (not a preset itself): DIV2K-style folders of
HR images, random LR patches (48x48 for EDSR/RCAN/RRDBNet/SPAN, 64x64 for SwinIR), flips and
rotations, L1 loss, Adam. The papers halve the learning rate in steps; flax_sr's cosine
schedule with a short warm-up stands in for that. The step counts are the papers' order of
magnitude (hundreds of thousands: GPU runs); override ``--num_train_steps`` and
``--train_minutes`` for a CPU.
"""


def paper_recipe(*, scale: int, lr_patch: int = 48, batch_size: int = 16,
                 learning_rate: float = 1e-4, num_train_steps: int = 300_000) -> dict:
  return dict(dataset='folder', hr_size=lr_patch * scale, input_size=lr_patch, augment=True,
              loss='l1', batch_size=batch_size, learning_rate=learning_rate,
              lr_schedule='cosine', warmup_steps=1000, num_train_steps=num_train_steps,
              patches_per_image=32, eval_every=5000, checkpoint_every=5000, log_every=100)
