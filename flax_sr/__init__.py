"""flax_sr: single-image super-resolution in JAX/Flax.

The public API, for use from other JAX code (every function is pure and works under the
caller's ``jax.jit``, ``jax.vmap`` and ``jax.grad``):

    model = flax_sr.ReferenceSR(scale=3)
    state = flax_sr.create_train_state(jax.random.key(0), model, optax.adam(1e-4),
                                       lr_shape=(1, 32, 32, 3))
    state, metrics = jax.jit(flax_sr.train_step)(state, {'hr': hr_uint8})
    sums = jax.jit(flax_sr.eval_step)(state, {'hr': hr_uint8})
    sr = flax_sr.upscale(variables, lr_images, model=model)
    lr = flax_sr.degrade(hr_uint8, 3)            # MATLAB-bicubic downscale
    flax_sr.psnr(sr, hr, shave=3, y_channel=True)
"""

from flax_sr.config import Config, UserError
from flax_sr.resize import bicubic_downscale, crop_to_multiple, imresize
from flax_sr.metrics import psnr, rgb_to_y, ssim
from flax_sr.models import EDSR, ESPCN, ReferenceSR, create_model, default_upsample_factors
from flax_sr.train import (TrainState, create_train_state, degrade, eval_step, make_optimizer,
                           model_from_config, train_step, upscale)

__all__ = [
    'Config', 'UserError', 'bicubic_downscale', 'crop_to_multiple', 'imresize', 'psnr',
    'rgb_to_y', 'ssim', 'EDSR', 'ESPCN', 'ReferenceSR', 'create_model',
    'default_upsample_factors', 'TrainState', 'create_train_state', 'degrade', 'eval_step',
    'make_optimizer', 'model_from_config', 'train_step', 'upscale',
]
