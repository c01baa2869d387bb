"""PyTorch checkpoints as flax_sr parameters: the state dicts of ESRGAN's RRDBNet,
Real-ESRGAN's SRVGGNetCompact, RCAN, SwinIR, HAT and SPAN, in the key layouts found in the wild.

State dicts are plain ``{key: numpy array}`` mappings here (``load_state_dict`` reads a file
into one), so the conversion itself needs no torch. ``from_state_dict`` detects the
architecture from the keys and its settings from the keys and shapes:

* RRDBNet: width, depth, growth; the scale from its number of upsampling convolutions (x2
  and x3 both have one, so x3 needs ``scale=3``).
* SRVGGNetCompact: width, depth, scale, PReLU vs ReLU (LeakyReLU looks like ReLU: say so).
* RCAN: width, groups, blocks per group, reduction, scale, the mean shift (from ``sub_mean``).
* SwinIR: embedding width, depths, heads, window, MLP ratio, upsampler, residual connection,
  scale; the pixel range as spandrel infers it (255 for window 7, the JPEG models).
* HAT: as SwinIR, plus the CAB's compression and squeeze, OCAB's overlap ratio; the pixel
  range (1) and ``conv_scale`` (0.01) are not stored and take the published models' values.
* SPAN: width, scale, whether the input is normalised (``no_norm``).

Convolution kernels go from PyTorch's (out, in, kh, kw) to Flax's (kh, kw, in, out), linear
weights are transposed, and convolutions before a pixel shuffle have their outputs reordered.
Derived tensors (SwinIR's ``relative_position_index``, checked, and ``attn_mask``; SPAN's
``eval_conv``, recomputed from the trained branches; RCAN's mean shift, read) are not
parameters; any other key the converter does not use is an error.
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
  flat = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, 'detach') else v, np.float32)
           for k, v in state.items() if hasattr(v, 'shape')}
  # DataParallel's 'module.' prefix, and a 'model.' one (Lightning, some trainers), are
  # dropped when every key has it; the old sequential RRDBNet layout's keys start with
  # 'model.<index>' and keep it.
  for prefix in PREFIXES:
    if flat and all(k.startswith(prefix) for k in flat) and not (
        prefix == 'model.' and any(re.match(r'model\.\d', k) for k in flat)):
      flat = {k[len(prefix):]: v for k, v in flat.items()}
  return flat


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
  # BasicSR's x2 (and x1) RRDBNets pixel-unshuffle the RGB input first: 12 (48) channels.
  unshuffle = {3: 1, 12: 2, 48: 4}.get(int(first.shape[1]))
  if unshuffle is None:
    raise WeightsError(f'conv_first.weight has {first.shape[1]} input channels, not 3 (RGB) or '
                       f'12 (RGB pixel-unshuffled by 2)')
  blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r'body\.(\d+)\.', k))})
  ups = sorted(k for k in state if re.match(r'conv_up\d\.weight$', k))
  detected = 2 ** len(ups) // unshuffle
  if detected < 2:
    raise WeightsError('an x1 RRDBNet (restoration without upscaling) is not supported')
  if scale is None:
    scale = detected
  elif not (scale == detected or (scale == 3 and len(ups) == 1 and unshuffle == 1)):
    raise WeightsError(f'the state dict has {len(ups)} upsampling convolutions (x{detected}), '
                       f'not x{scale}')
  kwargs = dict(scale=scale, features=int(first.shape[0]), num_rrdb=len(blocks),
                growth=int(state['body.0.rdb1.conv1.weight'].shape[0]),
                pixel_unshuffle=unshuffle)
  conv_first = _conv(state, 'conv_first')
  if unshuffle > 1:
    # PyTorch's pixel_unshuffle orders channels (channel, row, column); ours (row, column,
    # channel).
    order = np.arange(3 * unshuffle**2).reshape(3, unshuffle**2).T.reshape(-1)
    conv_first['kernel'] = conv_first['kernel'][:, :, order, :]
  params: dict[str, Any] = {'conv_first': conv_first,
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
    raise WeightsError(f'reading {path.suffix} files needs PyTorch: pip install '
                       f'"flax_sr[torch]" (or torch alone); .safetensors files need only '
                       f'safetensors') from error
  return unwrap(torch.load(str(path), map_location='cpu', weights_only=True))


# ----------------------------------------------------------------------------------------------
# Shared by the converters below: every key used exactly once, the rest an error.


class _StateReader:
  """Reads a state dict's tensors in Flax layout and remembers which keys it used, so that
  ``finish`` can name the first key no parameter took."""

  def __init__(self, state: Mapping[str, np.ndarray], architecture: str):
    self.state = dict(state)
    self.architecture = architecture
    self.used: set[str] = set()

  def has(self, key: str) -> bool:
    return key in self.state

  def tensor(self, key: str) -> np.ndarray:
    if key not in self.state:
      raise WeightsError(f'missing key {key} in the {self.architecture} state dict')
    self.used.add(key)
    return self.state[key]

  def conv(self, key: str, bias: bool = True) -> dict[str, np.ndarray]:
    weight = self.tensor(f'{key}.weight')
    if weight.ndim != 4:
      raise WeightsError(f'{key}.weight: expected a convolution, found shape {weight.shape}')
    params = {'kernel': np.transpose(weight, (2, 3, 1, 0))}
    if bias:
      params['bias'] = self.tensor(f'{key}.bias')
    return params

  def dense(self, key: str) -> dict[str, np.ndarray]:
    """A ``nn.Linear``, or a 1x1 convolution used as one."""
    weight = self.tensor(f'{key}.weight')
    weight = weight.reshape(weight.shape[0], -1)
    return {'kernel': weight.T, 'bias': self.tensor(f'{key}.bias')}

  def norm(self, key: str) -> dict[str, np.ndarray]:
    return {'scale': self.tensor(f'{key}.weight'), 'bias': self.tensor(f'{key}.bias')}

  def count(self, pattern: str) -> int:
    """1 + the largest N among keys matching ``pattern`` (a regex with one group), or 0."""
    found = [int(m.group(1)) for k in self.state if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0

  def finish(self, derived: str | None = None) -> None:
    """Raises for the first unused key not matching the ``derived`` regex (buffers)."""
    for key in sorted(self.state):
      if key not in self.used and not (derived and re.search(derived, key)):
        raise WeightsError(f'unexpected key {key} (shape {self.state[key].shape}) in the '
                           f'{self.architecture} state dict')


def _pixel_shuffle_scale(reader: _StateReader, keys: list[str], channels: int) -> int:
  scale = 1
  for key in keys:
    outputs = reader.state[f'{key}.weight'].shape[0]
    factor = int(round((outputs / channels) ** 0.5))
    if factor * factor * channels != outputs:
      raise WeightsError(f'{key}.weight has {outputs} outputs, not {channels} x a square')
    scale *= factor
  return scale


# ----------------------------------------------------------------------------------------------
# RCAN (the original repo's names, which BasicSR and spandrel keep).


def rcan_from_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """(RCAN keyword arguments, Flax params) from an RCAN state dict (``head``, ``body.G.body.B
  .body.K``, ``tail``)."""
  reader = _StateReader(unwrap(state), 'RCAN')
  if not reader.has('body.0.body.0.body.3.conv_du.0.weight'):
    raise WeightsError('not an RCAN state dict: no body.0.body.0.body.3.conv_du.0.weight')
  if reader.has('head.1.weight'):
    raise WeightsError('RCAN with a pixel-unshuffle head (unshuffle_mod) is not supported')
  num_groups = reader.count(r'body\.(\d+)\.') - 1
  num_rcab = reader.count(r'body\.0\.body\.(\d+)\.') - 1
  features = int(reader.state['head.0.weight'].shape[0])
  up_keys = [f'tail.0.{i}' for i in range(0, 20, 2) if reader.has(f'tail.0.{i}.weight')]
  scale = _pixel_shuffle_scale(reader, up_keys, features)
  reduction = features // int(reader.state['body.0.body.0.body.3.conv_du.0.weight'].shape[0])
  kwargs: dict[str, Any] = dict(scale=scale, features=features, num_groups=num_groups,
                                num_rcab=num_rcab, reduction=reduction)
  if reader.has('sub_mean.weight'):
    # MeanShift: an identity 1x1 conv (divided by the std, 1 in every published model) and
    # a bias of -rgb_range * mean; the range (255) is not stored.
    weight = reader.tensor('sub_mean.weight').reshape(3, 3)
    bias = reader.tensor('sub_mean.bias')
    reader.tensor('add_mean.weight'), reader.tensor('add_mean.bias')
    if not np.allclose(weight, np.eye(3)):
      raise WeightsError('sub_mean.weight is not the identity (a std other than 1)')
    mean = -bias / 255.0
    from flax_sr.blocks import DIV2K_RGB_MEAN
    if np.allclose(mean, DIV2K_RGB_MEAN, atol=1e-6):  # the float32 rounding of the usual one
      mean = DIV2K_RGB_MEAN
    kwargs.update(rgb_range=255.0, rgb_mean=tuple(float(v) for v in mean))
  else:
    kwargs.update(rgb_range=1.0, rgb_mean=(0.0, 0.0, 0.0))
  params: dict[str, Any] = {'head': reader.conv('head.0'),
                            'body_conv': reader.conv(f'body.{num_groups}'),
                            'tail': reader.conv('tail.1')}
  for g in range(num_groups):
    for b in range(num_rcab):
      key = f'body.{g}.body.{b}.body'
      params[f'group{g}_rcab{b}'] = {
          'conv1': reader.conv(f'{key}.0'), 'conv2': reader.conv(f'{key}.2'),
          'attention': {'down': reader.dense(f'{key}.3.conv_du.0'),
                        'up': reader.dense(f'{key}.3.conv_du.2')}}
    params[f'group{g}_conv'] = reader.conv(f'body.{g}.body.{num_rcab}')
  from flax_sr.blocks import upsample_steps
  for i, (key, factor) in enumerate(zip(up_keys, upsample_steps(scale))):
    params[f'up{i}'] = reorder_for_pixel_shuffle(reader.conv(key), factor)
  reader.finish()
  return kwargs, params


# ----------------------------------------------------------------------------------------------
# SPAN.


def span_from_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """(SPAN keyword arguments, Flax params) from a SPAN state dict. Each ``Conv3XC`` keeps its
  trained branches (``sk``, ``conv.0..2``); ``eval_conv`` is their merge, recomputed."""
  reader = _StateReader(unwrap(state), 'SPAN')
  if not reader.has('block_1.c1_r.sk.weight'):
    raise WeightsError('not a SPAN state dict: no block_1.c1_r.sk.weight')

  def conv3xc(key):
    return {'sk': reader.conv(f'{key}.sk'), 'conv_0': reader.conv(f'{key}.conv.0'),
            'conv_1': reader.conv(f'{key}.conv.1'), 'conv_2': reader.conv(f'{key}.conv.2')}

  features = int(reader.state['conv_1.sk.weight'].shape[0])
  scale = _pixel_shuffle_scale(reader, ['upsampler.0'], 3)
  params: dict[str, Any] = {'conv_1': conv3xc('conv_1'), 'conv_2': conv3xc('conv_2'),
                            'conv_cat': reader.conv('conv_cat'),
                            'upsampler': reorder_for_pixel_shuffle(reader.conv('upsampler.0'),
                                                                   scale)}
  for i in range(1, 7):
    params[f'block_{i}'] = {name: conv3xc(f'block_{i}.{name}')
                            for name in ('c1_r', 'c2_r', 'c3_r')}
  normalize = not reader.has('no_norm')
  reader.finish(derived=r'(eval_conv\.(weight|bias)|^no_norm)$')
  return dict(scale=scale, features=features, normalize=normalize), params


# ----------------------------------------------------------------------------------------------
# SwinIR.


def _window_transformer_layout(reader: _StateReader) -> tuple[int, tuple, tuple, int]:
  """(embedding width, depths, heads, window size) of a SwinIR/HAT state dict: the groups and
  blocks counted from the keys, heads and window from each group's bias table, whose
  (2w - 1)^2 rows give the window."""
  features = int(reader.state['conv_first.weight'].shape[0])
  num_layers = reader.count(r'layers\.(\d+)\.')
  depths = tuple(reader.count(rf'layers\.{i}\.residual_group\.blocks\.(\d+)\.')
                 for i in range(num_layers))
  table = 'layers.{}.residual_group.blocks.0.attn.relative_position_bias_table'
  num_heads = tuple(int(reader.state[table.format(i)].shape[1]) for i in range(num_layers))
  window_size = int(round((reader.state[table.format(0)].shape[0] ** 0.5 + 1) / 2))
  return features, depths, num_heads, window_size


def swinir_from_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """(SwinIR keyword arguments, Flax params) from a SwinIR state dict (the original repo's
  names: ``conv_first``, ``patch_embed.norm``, ``layers.I.residual_group.blocks.J``, ...)."""
  from flax_sr import swinir
  from flax_sr.blocks import upsample_steps
  reader = _StateReader(unwrap(state), 'SwinIR')
  if not reader.has('layers.0.residual_group.blocks.0.attn.relative_position_bias_table'):
    raise WeightsError('not a SwinIR state dict: no layers.0.residual_group.blocks.0.attn.'
                       'relative_position_bias_table')
  if reader.has('conv_first.1.weight'):
    raise WeightsError('SwinIR with a pixel-unshuffle start (start_unshuffle) is not supported')
  features, depths, num_heads, window_size = _window_transformer_layout(reader)
  hidden = reader.state['layers.0.residual_group.blocks.0.mlp.fc1.weight'].shape[0]
  resi_connection = '1conv' if reader.has('conv_after_body.weight') else '3conv'
  if reader.has('conv_before_upsample.0.weight'):
    upsampler = 'nearest+conv' if reader.has('conv_up1.weight') else 'pixelshuffle'
  elif reader.has('upsample.0.weight'):
    upsampler = 'pixelshuffledirect'
  else:
    raise WeightsError('SwinIR without an upsampler (x1 denoising/JPEG models) is not supported')

  def residual(key, name):
    if resi_connection == '1conv':
      return {name: reader.conv(key)}
    return {f'{name}_{i}': reader.conv(f'{key}.{i}') for i in (0, 2, 4)}

  params: dict[str, Any] = {'conv_first': reader.conv('conv_first'),
                            'patch_norm': reader.norm('patch_embed.norm'),
                            'norm': reader.norm('norm'),
                            **residual('conv_after_body', 'conv_after_body')}
  index = swinir.relative_position_index(window_size)
  for i, depth in enumerate(depths):
    for j in range(depth):
      key = f'layers.{i}.residual_group.blocks.{j}'
      if reader.has(f'{key}.attn.relative_position_index'):
        stored = reader.tensor(f'{key}.attn.relative_position_index')
        if not np.array_equal(stored, index):
          raise WeightsError(f'{key}.attn.relative_position_index is not the Swin numbering '
                             f'of a {window_size}x{window_size} window')
      params[f'layers_{i}_block_{j}'] = {
          'norm1': reader.norm(f'{key}.norm1'), 'norm2': reader.norm(f'{key}.norm2'),
          'attn': {'qkv': reader.dense(f'{key}.attn.qkv'),
                   'proj': reader.dense(f'{key}.attn.proj'),
                   'relative_position_bias_table':
                       reader.tensor(f'{key}.attn.relative_position_bias_table')},
          'mlp_fc1': reader.dense(f'{key}.mlp.fc1'), 'mlp_fc2': reader.dense(f'{key}.mlp.fc2')}
    params.update(residual(f'layers.{i}.conv', f'layers_{i}_conv'))
  kwargs: dict[str, Any] = dict(features=features, depths=depths, num_heads=num_heads,
                                window_size=window_size, mlp_ratio=float(hidden / features),
                                upsampler=upsampler, resi_connection=resi_connection,
                                # spandrel's rule: window 7 is only used by the JPEG models,
                                # which work on [0, 255].
                                img_range=255.0 if window_size == 7 else 1.0)
  if upsampler == 'pixelshuffledirect':
    scale = _pixel_shuffle_scale(reader, ['upsample.0'], 3)
    params['upsample'] = reorder_for_pixel_shuffle(reader.conv('upsample.0'), scale)
  else:
    upsample_features = int(reader.state['conv_before_upsample.0.weight'].shape[0])
    params['conv_before_upsample'] = reader.conv('conv_before_upsample.0')
    params['conv_last'] = reader.conv('conv_last')
    if upsampler == 'pixelshuffle':
      keys = [f'upsample.{i}' for i in range(0, 20, 2) if reader.has(f'upsample.{i}.weight')]
      scale = _pixel_shuffle_scale(reader, keys, upsample_features)
      for i, (key, factor) in enumerate(zip(keys, upsample_steps(scale))):
        params[f'upsample_{i}'] = reorder_for_pixel_shuffle(reader.conv(key), factor)
    else:
      steps = reader.count(r'conv_up(\d)\.weight') - 1
      scale = 2 ** steps
      for i in range(1, steps + 1):
        params[f'conv_up{i}'] = reader.conv(f'conv_up{i}')
      params['conv_hr'] = reader.conv('conv_hr')
    kwargs['upsample_features'] = upsample_features
  reader.finish(derived=r'(attn_mask|relative_position_index)$')
  return dict(scale=scale, **kwargs), params


# ----------------------------------------------------------------------------------------------
# HAT.


def hat_from_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """(HAT keyword arguments, Flax params) from a HAT state dict (the original repo's names,
  SwinIR's plus ``conv_block.cab`` and ``overlap_attn``)."""
  from flax_sr import hat
  from flax_sr.blocks import upsample_steps
  reader = _StateReader(unwrap(state), 'HAT')
  if not reader.has('layers.0.residual_group.overlap_attn.relative_position_bias_table'):
    raise WeightsError('not a HAT state dict: no layers.0.residual_group.overlap_attn.'
                       'relative_position_bias_table')
  features, depths, num_heads, window_size = _window_transformer_layout(reader)
  # OCAB's table has (ws + ows - 1)^2 rows: the overlapping window size, hence the ratio.
  oca_rows = reader.state['layers.0.residual_group.overlap_attn.relative_position_bias_table']
  ows = int(round(oca_rows.shape[0] ** 0.5)) - window_size + 1
  overlap_ratio = (ows - window_size) / window_size
  block = 'layers.0.residual_group.blocks.0.conv_block.cab'
  compress_ratio = features // int(reader.state[f'{block}.0.weight'].shape[0])
  squeeze_factor = features // int(reader.state[f'{block}.3.attention.1.weight'].shape[0])
  hidden = reader.state['layers.0.residual_group.blocks.0.mlp.fc1.weight'].shape[0]
  resi_connection = '1conv' if reader.has('conv_after_body.weight') else 'identity'
  upsample_features = int(reader.state['conv_before_upsample.0.weight'].shape[0])
  keys = [f'upsample.{i}' for i in range(0, 20, 2) if reader.has(f'upsample.{i}.weight')]
  scale = _pixel_shuffle_scale(reader, keys, upsample_features)

  def transformer_parts(key):
    return {'norm1': reader.norm(f'{key}.norm1'), 'norm2': reader.norm(f'{key}.norm2'),
            'mlp_fc1': reader.dense(f'{key}.mlp.fc1'), 'mlp_fc2': reader.dense(f'{key}.mlp.fc2')}

  params: dict[str, Any] = {'conv_first': reader.conv('conv_first'),
                            'patch_norm': reader.norm('patch_embed.norm'),
                            'norm': reader.norm('norm'),
                            'conv_before_upsample': reader.conv('conv_before_upsample.0'),
                            'conv_last': reader.conv('conv_last')}
  if resi_connection == '1conv':
    params['conv_after_body'] = reader.conv('conv_after_body')
  for i, (key, factor) in enumerate(zip(keys, upsample_steps(scale))):
    params[f'upsample_{i}'] = reorder_for_pixel_shuffle(reader.conv(key), factor)
  for i, depth in enumerate(depths):
    group = f'layers.{i}.residual_group'
    for j in range(depth):
      key = f'{group}.blocks.{j}'
      params[f'layers_{i}_block_{j}'] = {
          **transformer_parts(key),
          'attn': {'qkv': reader.dense(f'{key}.attn.qkv'),
                   'proj': reader.dense(f'{key}.attn.proj'),
                   'relative_position_bias_table':
                       reader.tensor(f'{key}.attn.relative_position_bias_table')},
          'conv_block': {'conv1': reader.conv(f'{key}.conv_block.cab.0'),
                         'conv2': reader.conv(f'{key}.conv_block.cab.2'),
                         'attention': {
                             'down': reader.dense(f'{key}.conv_block.cab.3.attention.1'),
                             'up': reader.dense(f'{key}.conv_block.cab.3.attention.3')}}}
    params[f'layers_{i}_overlap_attn'] = {
        **transformer_parts(f'{group}.overlap_attn'),
        'qkv': reader.dense(f'{group}.overlap_attn.qkv'),
        'proj': reader.dense(f'{group}.overlap_attn.proj'),
        'relative_position_bias_table':
            reader.tensor(f'{group}.overlap_attn.relative_position_bias_table')}
    if resi_connection == '1conv':
      params[f'layers_{i}_conv'] = reader.conv(f'layers.{i}.conv')
  from flax_sr import swinir
  for key, expected in (('relative_position_index_SA', swinir.relative_position_index(window_size)),
                        ('relative_position_index_OCA',
                         hat.overlap_position_index(window_size, overlap_ratio))):
    if reader.has(key) and not np.array_equal(reader.tensor(key), expected):
      raise WeightsError(f'{key} is not HAT\'s numbering for window {window_size}, overlap '
                         f'{overlap_ratio}')
  reader.finish(derived=r'(attn_mask|relative_position_index(_SA|_OCA)?)$')
  return dict(scale=scale, features=features, depths=depths, num_heads=num_heads,
              window_size=window_size, mlp_ratio=float(hidden / features),
              compress_ratio=compress_ratio, squeeze_factor=squeeze_factor,
              overlap_ratio=overlap_ratio, resi_connection=resi_connection,
              upsample_features=upsample_features), params


# ----------------------------------------------------------------------------------------------
# Any supported architecture.

ARCHITECTURES = ('rrdb', 'srvgg', 'rcan', 'swinir', 'hat', 'span')


def detect_architecture(state: Mapping[str, np.ndarray]) -> str:
  """The flax_sr model name of an unwrapped state dict, from its keys."""
  keys = set(state)
  if any('relative_position_bias_table' in k for k in keys) and 'conv_first.weight' in keys:
    return 'hat' if any('overlap_attn' in k for k in keys) else 'swinir'
  if 'block_1.c1_r.sk.weight' in keys:
    return 'span'
  if 'body.0.body.0.body.3.conv_du.0.weight' in keys:
    return 'rcan'
  if 'body.0.weight' in keys and 'conv_first.weight' not in keys:
    return 'srvgg'
  if ('conv_first.weight' in keys or 'RRDB_trunk.0.RDB1.conv1.weight' in keys
      or 'model.1.sub.0.RDB1.conv1.0.weight' in keys):
    return 'rrdb'
  example = sorted(keys)[0] if keys else 'no tensors at all'
  raise WeightsError(f'unknown architecture: the state dict (first key {example}) is none of '
                     f'{", ".join(ARCHITECTURES)}')


def from_state_dict(state: Mapping[str, Any], scale: int | None = None
                    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
  """(model name, model keyword arguments, Flax params) of any supported architecture."""
  state = unwrap(state)
  name = detect_architecture(state)
  if name == 'rrdb':
    kwargs, params = rrdbnet_from_state_dict(state, scale)
  else:
    converters = {'srvgg': srvgg_from_state_dict, 'rcan': rcan_from_state_dict,
                  'swinir': swinir_from_state_dict, 'hat': hat_from_state_dict,
                  'span': span_from_state_dict}
    kwargs, params = converters[name](state)
    if scale is not None and scale != kwargs['scale']:
      raise WeightsError(f'the state dict is a x{kwargs["scale"]} {name} model, not x{scale}')
  return name, kwargs, params
