"""ESRGAN stage 2 at CPU size: the stage-1 RRDBNet fine-tuned with L1 + VGG16 perceptual + relativistic GAN against Real-ESRGAN's U-Net discriminator (32 features), x4.

Start it from stage 1 with ``--init_from STAGE1_WORKDIR`` (``experiments/esrgan_x4.py`` does).
Loss weights as Real-ESRGAN's (pixel L1 1, perceptual 1 on conv1_2/conv2_2 at 0.1 and
conv3_3/conv4_3/conv5_3 at 1, adversarial 0.1), ESRGAN's relativistic average loss, constant
learning rate 1e-4 for both networks, batch 8 of 96x96 HR crops, weight EMA.
"""


def get_config() -> dict:
  return dict(dataset='folder', input_size=24, hr_size=96, model='rrdb', features=32,
              num_rrdb=3, loss='l1', learning_rate=1e-4, augment=True, crops_by_area=True,
              batch_size=8, patches_per_image=64, num_train_steps=2000, eval_every=500,
              ema_decay=0.999, discriminator='unet', disc_features=32, gan_loss='ragan',
              pixel_weight=1.0, perceptual_weight=1.0, adversarial_weight=0.1)
