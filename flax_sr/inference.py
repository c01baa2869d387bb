"""Using trained models: load a run (or shipped pretrained weights) and upscale images of any
size, in overlapping tiles when they are large, spread over the available devices."""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from flax_sr import checkpointing
from flax_sr import gan as gan_lib
from flax_sr import input_pipeline
from flax_sr import parallel
from flax_sr import shape_buckets
from flax_sr import train as train_lib
from flax_sr.config import Config, UserError

PRETRAINED_DIR = pathlib.Path(__file__).parent / 'pretrained'


class LoadedModel(NamedTuple):
  config: Config
  model: Any
  variables: dict[str, Any]
  step: int | None
  source: str


def load_run(workdir: str | pathlib.Path, step: str | int = 'best') -> LoadedModel:
  """The model of a training run, rebuilt from its saved configuration, with the weights of
  ``step`` ('best' by validation PSNR, 'latest', or a step number); the EMA when kept."""
  workdir = pathlib.Path(workdir).expanduser().absolute()
  config = checkpointing.load_config(workdir)
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  steps = checkpointer.all_steps()
  if not steps:
    raise checkpointing.CheckpointError(f'no complete checkpoint in {checkpointer.directory}')
  if step == 'best':
    chosen = checkpointer.best_step()
  elif step == 'latest':
    chosen = checkpointer.latest_step()
  else:
    chosen = int(step)
    if chosen not in steps:
      raise checkpointing.CheckpointError(
          f'no checkpoint at step {chosen} in {checkpointer.directory}; steps: '
          f'{", ".join(map(str, steps))}')
  # A named step must restore; 'best'/'latest' fall back to the next newest that does.
  fallbacks = [] if step not in ('best', 'latest') else sorted(
      (s for s in steps if s != chosen), reverse=True)
  try:
    chosen, state, _ = checkpointer.restore_first_good(
        [chosen] + fallbacks, gan_lib.run_state_from_config(config, total_steps=1))
  finally:
    checkpointer.close()
  return LoadedModel(config, state.model, train_lib.inference_variables(state), chosen,
                     f'{workdir} step {chosen}')


def checkpoint_path_to_run(path: str | pathlib.Path) -> tuple[pathlib.Path, int]:
  """``WORKDIR/checkpoints/STEP`` -> (WORKDIR, STEP)."""
  path = pathlib.Path(path).expanduser().absolute()
  if not (path.parent.name == 'checkpoints' and path.name.isdigit()):
    raise UserError(f'{path} is not a checkpoint folder (expected WORKDIR/checkpoints/STEP)')
  return path.parent.parent, int(path.name)


def pretrained_names() -> list[str]:
  return sorted(p.stem for p in PRETRAINED_DIR.glob('*.json'))


def load_pretrained(name: str) -> LoadedModel:
  """Weights shipped with the package (e.g. 'x3'); their .json says how they were trained."""
  meta_path, weights_path = PRETRAINED_DIR / f'{name}.json', PRETRAINED_DIR / f'{name}.msgpack'
  if not meta_path.is_file() or not weights_path.is_file():
    raise UserError(f'no pretrained model {name!r}; available: '
                    f'{", ".join(pretrained_names()) or "none"}')
  config = Config.from_dict(json.loads(meta_path.read_text())['config'])
  model = train_lib.model_from_config(config)
  template = model.lazy_init(jax.random.key(0), jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32),
                             train=False)
  stored = serialization.from_bytes(template, weights_path.read_bytes())
  # Weights ship as float16 (half the bytes); compute in float32.
  variables = jax.tree.map(lambda a: np.asarray(a, np.float32), stored)
  return LoadedModel(config, model, variables, None, f'pretrained {name}')


def load_weights(path: str | pathlib.Path, scale: int | None = None) -> LoadedModel:
  """A published PyTorch checkpoint (``.pth``/``.pt``/``.ckpt``/``.safetensors``) of a
  supported architecture (``torch_weights.ARCHITECTURES``), its settings detected from the
  state dict (``flax_sr.torch_weights``); ``scale`` is needed only for x3 RRDBNets."""
  from flax_sr import torch_weights
  state = torch_weights.load_state_dict(path)
  name, kwargs, params = torch_weights.from_state_dict(state, scale)
  config, extra = Config.for_model(name, kwargs)
  model = train_lib.model_from_config(config)
  # Settings no config field holds (RRDBNet's growth, SRVGG's activation, RCAN's mean shift,
  # ...) are set on the model itself.
  model = model.clone(**{k: v for k, v in extra.items() if getattr(model, k) != v})
  template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
  torch_weights.check_params(template['params'], params)
  variables = {'params': jax.tree.map(lambda a: np.asarray(a, np.float32), params)}
  return LoadedModel(config, model, variables, None, f'{name} weights {pathlib.Path(path).name}')


WEIGHT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.safetensors')
# Module attributes that choose how a network computes, not which function it is.
_COMPUTE_ATTRIBUTES = ('parent', 'name', 'dtype', 'conv_impl', 'axis_name')


def model_differences(model: Any, other: Any) -> list[str]:
  """'attribute value (first) vs value (second)' for each setting where two flax_sr models
  differ (the class included); how they compute (dtype, conv_impl) is not a difference."""
  if type(model) is not type(other):
    return [f'architecture {type(model).__name__} vs {type(other).__name__}']
  return [f'{f.name} {getattr(model, f.name)!r} vs {getattr(other, f.name)!r}'
          for f in dataclasses.fields(model)
          if f.name not in _COMPUTE_ATTRIBUTES and getattr(model, f.name) != getattr(other, f.name)]


def load_any(source: str | pathlib.Path, scale: int | None = None) -> LoadedModel:
  """A weights file (``WEIGHT_SUFFIXES``), a run directory (its best step) or a pretrained
  name."""
  path = pathlib.Path(source).expanduser()
  if path.is_dir():
    return load_run(path, 'best')
  if path.suffix.lower() in WEIGHT_SUFFIXES:
    return load_weights(path, scale)
  if str(source) in pretrained_names():
    return load_pretrained(str(source))
  raise UserError(f'{source} is none of: a weights file ({", ".join(WEIGHT_SUFFIXES)}), a run '
                  f'directory, a pretrained name ({", ".join(pretrained_names()) or "none"})')


def load_initial_weights(config: Config) -> LoadedModel:
  """The weights ``--init_from`` names, checked to be those of the model ``config`` builds
  (one line naming the first setting that differs and the flag that sets it)."""
  try:
    loaded = load_any(config.init_from, config.scale)
  except UserError as error:
    raise UserError(f'--init_from: {error}') from error
  differences = model_differences(loaded.model, train_lib.model_from_config(config))
  if differences:
    raise UserError(f'--init_from {config.init_from} holds a different model than this run '
                    f'builds: {differences[0]} (weights vs run); set the run\'s flags to match '
                    f'(--model, --features, ...)')
  return loaded


def save_pretrained(loaded: LoadedModel, name: str, extra: dict | None = None,
                    directory: pathlib.Path = PRETRAINED_DIR) -> pathlib.Path:
  """Writes ``name``.msgpack (float16 weights) and ``name``.json (the exact training config).

  Shipped files hold no path of the machine that trained them: the data folders are recorded
  by name only (``training_data``, ``validation_data``) and the config's are cleared."""
  directory.mkdir(parents=True, exist_ok=True)
  variables = jax.tree.map(lambda a: np.asarray(a, np.float16), jax.device_get(loaded.variables))
  (directory / f'{name}.msgpack').write_bytes(serialization.to_bytes(variables))
  config = loaded.config
  meta = {'config': json.loads(dataclasses.replace(config, data_dir=None,
                                                   eval_data_dir=None).to_json()),
          'source': f'{config.dataset} x{config.scale} run, step {loaded.step}',
          'training_data': (' + '.join(pathlib.Path(folder).name for folder in
                                       input_pipeline.split_folders(config.data_dir))
                            if config.data_dir else None),
          'validation_data': (pathlib.Path(config.eval_data_dir).name if config.eval_data_dir
                              else None),
          **(extra or {})}
  (directory / f'{name}.json').write_text(json.dumps(meta, indent=2, sort_keys=True) + '\n')
  return directory / f'{name}.msgpack'


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of size ``tile`` covering ``length`` with ``overlap`` on each side;
  every tile lies inside the image (the last one is shifted back), so no artificial padding
  changes what the network sees."""
  if length <= tile:
    return [0]
  stride = tile - 2 * overlap
  if stride < 1:
    raise UserError(f'--tile {tile} must be larger than twice --tile_overlap {overlap}')
  starts = list(range(0, length - tile, stride))
  return starts + [length - tile]


def tile_boxes(height: int, width: int, tile: int, overlap: int
               ) -> tuple[list[tuple[int, int]], tuple[int, int]]:
  """The (top, left) of every LR tile of an image, and the tiles' (height, width)."""
  th, tw = min(tile, height), min(tile, width)
  return [(y, x) for y in tile_starts(height, th, overlap)
          for x in tile_starts(width, tw, overlap)], (th, tw)


def stitch_tiles(outputs: np.ndarray, boxes, lr_size: tuple[int, int], overlap: int,
                 scale: int) -> np.ndarray:
  """The upscaled image from the upscaled tiles (n, th*s, tw*s, c) cut at ``boxes``: each
  tile's centre is kept; its margins (``overlap`` LR pixels) are left to the neighbours,
  except at the image border where no neighbour exists."""
  h, w = lr_size
  th, tw = outputs.shape[1] // scale, outputs.shape[2] // scale
  s, o = scale, overlap
  result = np.zeros((h * s, w * s, outputs.shape[-1]), np.float32)
  for (y, x), out in zip(boxes, outputs):
    y0 = 0 if y == 0 else y + o
    x0 = 0 if x == 0 else x + o
    y1 = h if y + th == h else y + th - o
    x1 = w if x + tw == w else x + tw - o
    result[y0 * s:y1 * s, x0 * s:x1 * s] = out[(y0 - y) * s:(y1 - y) * s,
                                               (x0 - x) * s:(x1 - x) * s]
  return result


class Upscaler:
  """Upscales whole images with a loaded model, in tiles when they exceed ``tile`` LR pixels,
  with the tiles of an image batched and split over the devices of ``mesh``."""

  def __init__(self, loaded: LoadedModel, *, tile: int = 256, tile_overlap: int = 16,
               batch_size: int = 8, mesh=None, self_ensemble: bool = False):
    self.loaded = loaded
    self.scale = loaded.model.scale
    self.tile = tile
    self.overlap = tile_overlap
    self.mesh = mesh or parallel.make_mesh()
    self.batch_size = -(-batch_size // self.mesh.size) * self.mesh.size
    self.variables = parallel.put_replicated(loaded.variables, self.mesh)
    upscale = functools.partial(train_lib.upscale, model=loaded.model,
                                self_ensemble=self_ensemble)
    self._upscale = jax.jit(upscale, in_shardings=(parallel.replicated(self.mesh),
                                                   parallel.batch_sharding(self.mesh)))
    self._upscale_padded = jax.jit(
        lambda variables, lr, lr_size: upscale(variables, lr, lr_size=lr_size),
        in_shardings=(parallel.replicated(self.mesh), parallel.batch_sharding(self.mesh),
                      parallel.batch_sharding(self.mesh)))
    # Whether an image may run padded into a larger shape with the same output (see
    # ``shape_buckets``): one compilation per bucket instead of one per image shape.
    self.supports_buckets = shape_buckets.supports_model(loaded.model, self_ensemble)

  def _run(self, lr_batch: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) -> (n, h*s, w*s, 3) float32, padded to the device batch and back."""
    n = len(lr_batch)
    outputs = []
    for start in range(0, n, self.batch_size):
      chunk = lr_batch[start:start + self.batch_size]
      real = len(chunk)
      pad = -real % self.mesh.size
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
      out = self._upscale(self.variables, jax.device_put(chunk, parallel.batch_sharding(self.mesh)))
      outputs.append(np.asarray(out)[:real])
    return np.concatenate(outputs)

  def _run_padded(self, lr_image: np.ndarray, bucket: tuple[int, int]) -> np.ndarray:
    """One image padded into ``bucket`` (LR height, width), its output cropped back."""
    h, w = lr_image.shape[:2]
    batch = np.repeat(shape_buckets.pad_into(lr_image, bucket)[None], self.mesh.size, axis=0)
    sizes = np.repeat(np.array([[h, w]], np.int32), self.mesh.size, axis=0)
    sharding = parallel.batch_sharding(self.mesh)
    out = self._upscale_padded(self.variables, jax.device_put(batch, sharding),
                               jax.device_put(sizes, sharding))
    return np.asarray(out[0])[:h * self.scale, :w * self.scale]

  def __call__(self, lr_image: np.ndarray, bucket: tuple[int, int] | None = None
               ) -> np.ndarray:
    """One LR image (H, W, 3) uint8 or float -> (H*s, W*s, 3) float32 in [0, 1]. ``bucket``
    (an LR shape at least the image's, at most ``tile``): run it padded into that shape, with
    the same output, where the model allows (``supports_buckets``); images of many sizes then
    share a few compilations."""
    h, w = lr_image.shape[:2]
    if (bucket is not None and self.supports_buckets and bucket[0] <= self.tile
        and bucket[1] <= self.tile):
      return self._run_padded(lr_image, bucket)
    if h <= self.tile and w <= self.tile:
      return self._run(lr_image[None])[0]
    boxes, (th, tw) = tile_boxes(h, w, self.tile, self.overlap)
    tiles = np.stack([lr_image[y:y + th, x:x + tw] for y, x in boxes])
    return stitch_tiles(self._run(tiles), boxes, (h, w), self.overlap, self.scale)
