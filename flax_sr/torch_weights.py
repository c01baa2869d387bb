"""PyTorch checkpoints as flax_sr parameters: the state dicts of ESRGAN's RRDBNet and
Real-ESRGAN's SRVGGNetCompact, in the key layouts found in the wild.

State dicts are plain ``{key: numpy array}`` mappings here (``load_state_dict`` reads a file
into one), so the conversion itself needs no torch. What is detected from the keys and shapes:
the architecture, its width, depth and growth, SRVGG's activation; RRDBNet's scale from its
number of upsampling convolutions (x2 and x3 both have one, so x3 needs ``scale=3``).
Convolution kernels go from PyTorch's (out, in, kh, kw) to Flax's (kh, kw, in, out).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from flax_sr.config import UserError

WRAPPERS = ('params_ema', 'params', 'state_dict', 'model', 'net_g')
PREFIXES = ('module.', 'model.')


class WeightsError(UserError):
  """A state dict that does not fit: a one-line message naming the first offending key."""


def unwrap(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The parameter mapping inside BasicSR/Real-ESRGAN-style wrappers (``params_ema`` first,
  the EMA weights being the ones published), as float32 numpy arrays."""
  for key in WRAPPERS:
    inner = state.get(key) if isinstance(state, Mapping) else None
    if isinstance(inner, Mapping) and inner:
      return unwrap(inner)
  return {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, 'detach') else v, np.float32)
          for k, v in state.items() if hasattr(v, 'shape')}


def _conv(state, key: str) -> dict[str, np.ndarray]:
  weight = state.get(f'{key}.weight')
  if weight is None or weight.ndim != 4:
    raise WeightsError(f'expected a convolution {key}.weight, found '
                       f'{"none" if weight is None else weight.shape}')
  params = {'kernel': np.transpose(weight, (2, 3, 1, 0))}
  if f'{key}.bias' in state:
    params['bias'] = state[f'{key}.bias']
  return params


def reorder_for_pixel_shuffle(conv: dict[str, np.ndarray], factor: int) -> dict[str, np.ndarray]:
  """The convolution before a pixel shuffle, its outputs reordered from PyTorch's
  ``nn.PixelShuffle`` order (channel, row, column) to ``layers.pixel_shuffle``'s (row, column,
  channel)."""
  out = conv['kernel'].shape[-1]
  channels = out // (factor * factor)
  # Flax output index (i * r + j) * C + c takes PyTorch's c * r * r + i * r + j.
  order = np.arange(out).reshape(channels, factor * factor).T.reshape(-1)
  reordered = {'kernel': conv['kernel'][..., order]}
  if 'bias' in conv:
    reordered['bias'] = conv['bias'][order]
  return reordered


# ----------------------------------------------------------------------------------------------
# RRDBNet: three layouts of the same network.


def _rrdb_to_basicsr(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """BasicSR's names (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_upN``,
  ``conv_hr``, ``conv_last``) from the original ESRGAN repo's (``conv_first``,
  ``RRDB_trunk.N.RDBK``, ``trunk_conv``, ``upconvN``, ``HRconv``) or the old sequential one
  (``model.0``, ``model.1.sub.N.RDBK.convJ.0``, ...)."""
  if 'conv_first.weight' in state and 'conv_body.weight' in state:
    return state
  if 'RRDB_trunk.0.RDB1.conv1.weight' in state:
    renamed = {}
    for key, value in state.items():
      key = re.sub(r'^RRDB_trunk\.(\d+)\.RDB(\d)\.', r'body.\1.rdb\2.', key)
      key = {'trunk_conv': 'conv_body', 'upconv1': 'conv_up1', 'upconv2': 'conv_up2',
             'HRconv': 'conv_hr'}.get(key.split('.')[0], key.split('.')[0]) + (
                 '.' + key.split('.', 1)[1] if '.' in key else '')
      renamed[key] = value
    return renamed
  if 'model.0.weight' in state and 'model.1.sub.0.RDB1.conv1.0.weight' in state:
    renamed = {}
    top = sorted({int(m.group(1)) for k in state if (m := re.match(r'model\.(\d+)\.weight$', k))})
    blocks = sorted({int(m.group(1)) for k in state
                     if (m := re.match(r'model\.1\.sub\.(\d+)\.RDB', k))})
    names = ['conv_first'] + [f'conv_up{i + 1}' for i in range(len(top) - 3)] + ['conv_hr',
                                                                                  'conv_last']
    for index, name in zip(top, names):
      for part in ('weight', 'bias'):
        if f'model.{index}.{part}' in state:
          renamed[f'{name}.{part}'] = state[f'model.{index}.{part}']
    lr_conv = len(blocks)
    for part in ('weight', 'bias'):
      if f'model.1.sub.{lr_conv}.{part}' in state:
        renamed[f'conv_body.{part}'] = state[f'model.1.sub.{lr_conv}.{part}']
    for key, value in state.items():
      m = re.match(r'model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$', key)
      if m:
        renamed[f'body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}'] = value
    return renamed
  raise WeightsError('not an RRDBNet state dict: none of conv_first.weight, '
                     'RRDB_trunk.0.RDB1.conv1.weight, model.1.sub.0.RDB1.conv1.0.weight found')


def rrdbnet_from_state_dict(state: Mapping[str, Any], scale: int | None = None
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(RRDBNet keyword arguments, Flax params) from an RRDBNet state dict in any layout."""
  state = _rrdb_to_basicsr(unwrap(state))
  first = state['conv_first.weight']
  if first.shape[1] != 3:
    raise WeightsError(f'conv_first.weight has {first.shape[1]} input channels; only RGB models '
                       f'without pixel-unshuffle (BasicSR x1/x2 variants) are supported')
  blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r'body\.(\d+)\.', k))})
  ups = sorted(k for k in state if re.match(r'conv_up\d\.weight$', k))
  detected = 2 ** len(ups)
  if scale is None:
    scale = detected
  elif not (scale == detected or (scale == 3 and len(ups) == 1)):
    raise WeightsError(f'the state dict has {len(ups)} upsampling convolutions (x{detected}), '
                       f'not x{scale}')
  kwargs = dict(scale=scale, features=int(first.shape[0]), num_rrdb=len(blocks),
                growth=int(state['body.0.rdb1.conv1.weight'].shape[0]))
  params: dict[str, Any] = {'conv_first': _conv(state, 'conv_first'),
                            'conv_body': _conv(state, 'conv_body'),
                            'conv_hr': _conv(state, 'conv_hr'),
                            'conv_last': _conv(state, 'conv_last')}
  for i in range(len(ups)):
    params[f'conv_up{i + 1}'] = _conv(state, f'conv_up{i + 1}')
  for b in blocks:
    params[f'body_{b}'] = {f'rdb{k}': {f'conv{j}': _conv(state, f'body.{b}.rdb{k}.conv{j}')
                                       for j in range(1, 6)} for k in range(1, 4)}
  return kwargs, params


# ----------------------------------------------------------------------------------------------
# SRVGGNetCompact.


def srvgg_from_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """(SRVGGNetCompact keyword arguments, Flax params) from its state dict (``body.N``)."""
  state = unwrap(state)
  indices = sorted({int(m.group(1)) for k in state if (m := re.match(r'body\.(\d+)\.weight$', k))})
  if not indices or indices[0] != 0:
    raise WeightsError('not an SRVGGNetCompact state dict: no body.0.weight')
  convs = [i for i in indices if state[f'body.{i}.weight'].ndim == 4]
  prelus = [i for i in indices if state[f'body.{i}.weight'].ndim == 1]
  features = int(state['body.0.weight'].shape[0])
  out_channels = int(state[f'body.{convs[-1]}.weight'].shape[0])
  scale = int(round((out_channels / 3) ** 0.5))
  if scale * scale * 3 != out_channels:
    raise WeightsError(f'body.{convs[-1]}.weight has {out_channels} outputs, not 3 x scale^2')
  # Without PReLU weights ReLU and LeakyReLU look alike: ReLU is assumed (Real-ESRGAN's other
  # choice); pass act_type to the model for LeakyReLU.
  kwargs = dict(scale=scale, features=features, num_conv=len(convs) - 2,
                act_type='prelu' if prelus else 'relu')
  params: dict[str, Any] = {}
  for i in convs:
    params[f'body_{i}'] = _conv(state, f'body.{i}')
  params[f'body_{convs[-1]}'] = reorder_for_pixel_shuffle(params[f'body_{convs[-1]}'], scale)
  for i in prelus:
    params[f'body_{i}'] = {'weight': state[f'body.{i}.weight']}
  return kwargs, params


def check_params(expected: Any, converted: Any, path: str = '') -> None:
  """Raises ``WeightsError`` naming the first key whose presence or shape differs between a
  model's initialised params and converted ones."""
  if isinstance(expected, Mapping):
    if not isinstance(converted, Mapping):
      raise WeightsError(f'{path or "params"}: expected a module, found an array')
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    if missing:
      raise WeightsError(f'missing parameter {path}{missing[0]} in the state dict')
    if extra:
      raise WeightsError(f'unexpected parameter {path}{extra[0]} in the state dict')
    for key in expected:
      check_params(expected[key], converted[key], f'{path}{key}/')
    return
  if np.shape(expected) != np.shape(converted):
    raise WeightsError(f'{path.rstrip("/")}: shape {np.shape(converted)} in the state dict, '
                       f'{np.shape(expected)} in the model')


def load_state_dict(path) -> dict[str, np.ndarray]:
  """A ``.safetensors`` file (no torch needed) or a ``.pth``/``.pt``/``.ckpt`` file (needs
  torch), unwrapped (see ``unwrap``)."""
  import pathlib
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f'weights file {path} does not exist')
  if path.suffix == '.safetensors':
    try:
      from safetensors.numpy import load_file
    except ImportError as error:
      raise WeightsError('reading .safetensors needs the safetensors package '
                         '(pip install safetensors)') from error
    return unwrap(load_file(str(path)))
  try:
    import torch
  except ImportError as error:
    raise WeightsError(f'reading {path.suffix} files needs PyTorch (pip install torch); '
                       f'.safetensors files need only safetensors') from error
  return unwrap(torch.load(str(path), map_location='cpu', weights_only=True))
