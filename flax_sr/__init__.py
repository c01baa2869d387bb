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
    name, kwargs, params = flax_sr.from_state_dict(flax_sr.load_state_dict('net.pth'))
    sr = flax_sr.create_model(name, **kwargs).apply({'params': params}, lr_images)
    d = flax_sr.lpips(sr, hr)                    # per-image LPIPS (alex), float RGB in [0, 1]
    state, metrics = jax.jit(flax_sr.gan_train_step)(gan_state, {'hr': hr_uint8}, vgg_weights)
    lr = flax_sr.degradations.realesrgan(key, hr_uint8, 4)    # Real-ESRGAN's random LR
    jpeg = flax_sr.degradations.jpeg(images_uint8, 75)      # libjpeg's codec, bit for bit
"""

import importlib
from typing import Any

# Public names -> the module defining them. Imported on first use (PEP 562), so that
# ``python -m flax_sr.<tool>`` starts without JAX and can re-execute itself cheaply (see
# host_allocator) before the heavy imports.
_EXPORTS = {
    'config': ('Config', 'UserError'),
    'resize': ('bicubic_downscale', 'crop_to_multiple', 'imresize'),
    'metrics': ('psnr', 'rgb_to_y', 'ssim'),
    'models': ('EDSR', 'ESPCN', 'RCAN', 'ReferenceSR', 'RRDBNet', 'SPAN', 'SRVGGNetCompact',
               'create_model', 'default_upsample_factors'),
    'swinir': ('SwinIR',),
    'hat': ('HAT',),
    'torch_weights': ('from_state_dict', 'load_state_dict'),
    'gan': ('GANLosses', 'GANTrainState', 'discriminator_loss', 'gan_state', 'gan_train_step',
            'generator_adversarial_loss', 'perceptual_loss'),
    'discriminators': ('UNetDiscriminatorSN', 'VGGStyleDiscriminator'),
    'train': ('TrainState', 'create_train_state', 'degrade', 'eval_step', 'make_optimizer',
              'model_from_config', 'train_step', 'upscale'),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
# Modules that are public names themselves: flax_sr.lpips(images, references) is callable;
# flax_sr.degradations.realesrgan(key, hr, scale), flax_sr.degradations.jpeg(images, quality).
_PUBLIC_MODULES = ('lpips', 'degradations')
__all__ = list(_MODULE_OF) + list(_PUBLIC_MODULES)


def __getattr__(name: str) -> Any:
  if name in _PUBLIC_MODULES:
    return importlib.import_module(f'flax_sr.{name}')
  if name not in _MODULE_OF:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(f'flax_sr.{_MODULE_OF[name]}'), name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
