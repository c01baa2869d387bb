"""ESRGAN stage 2 at CPU size: the stage-1 RRDBNet fine-tuned with L1 + VGG16 perceptual + relativistic GAN against Real-ESRGAN's U-Net discriminator (16 features), x4.

Start it from stage 1 with ``--init_from STAGE1_WORKDIR`` (``experiments/esrgan_x4.py`` does).
Loss weights as Real-ESRGAN's (pixel L1 1, perceptual 1 on conv1_2/conv2_2 at 0.1 and
conv3_3/conv4_3/conv5_3 at 1, adversarial 0.1), ESRGAN's relativistic average loss, batch 8
of 96x96 HR crops, weight EMA. Both networks: Adam 2e-4 after a 50-step warm-up, cosine decay
over 1,700 steps (44 minutes of a 2-core CPU at 1.45 s a step; on a slower day the budget
stops it earlier, 1,534 steps in session 17), so stage 1's 15 and this fit in an hour.
The discriminator has 16 features (274 K parameters against the generator's 2.11 M: about
Real-ESRGAN's 4.4 M against 16.7 M), which keeps its share of the step near the VGG's.
"""


def get_config() -> dict:
  return dict(dataset='folder', input_size=24, hr_size=96, model='rrdb', features=32,
              num_rrdb=5, loss='l1', learning_rate=2e-4, lr_schedule='cosine', warmup_steps=50,
              augment=True, crops_by_area=True, batch_size=8, patches_per_image=64,
              num_train_steps=1700, eval_every=250, ema_decay=0.999, discriminator='unet',
              disc_features=16, gan_loss='ragan', pixel_weight=1.0, perceptual_weight=1.0,
              adversarial_weight=0.1)
