"""Input pipeline: HR images as uint8 from STL-10 (tfds), an image folder, or an embedded sample.

The LR input is made inside the jitted step, so the pipeline only delivers HR images. Sources
decode once into host memory (STL-10's 100,000 unlabelled images are 2.8 GB as uint8) and every
later epoch is a seeded permutation and a gather, which is what makes the warm stream fast and
the order exactly reproducible and resumable:

* the order of epoch ``e`` is ``default_rng([seed, e]).permutation``: same seed, same batches;
  a new order each epoch;
* the stream's position is ``(epoch, batch)``; ``TrainStream(..., position=p)`` continues there;
* in a multi-host run each process crops and augments only its own slice of every global
  batch, with the random draws of the whole batch: N processes deliver what one would.
"""

from __future__ import annotations

import logging
import os
import pathlib
import queue
import re
import socket
import threading
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from flax_sr.config import UserError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
STL10_TRAIN_SPLIT = 'unlabelled'
STL10_EVAL_SPLIT = 'test'
# The host tfds downloads STL-10 from; checked before a download so that an offline machine
# gets an answer in seconds instead of minutes of retries.
STL10_DOWNLOAD_HOST = ('ai.stanford.edu', 80)


class DataError(UserError):
  """Missing, unreadable or unusable data: a one-line message naming what and where."""


# ----------------------------------------------------------------------------------------------
# Sources: decoded HR images in memory.


class ArraySource:
  """Same-size HR images in one uint8 array (N, H, W, 3): STL-10 and the sample.

  Training samples are whole images (random flips/rot90 with ``augment``).
  """

  def __init__(self, images: np.ndarray, name: str):
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
      raise ValueError(f'expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}')
    self.images = images
    self.name = name

  def __len__(self) -> int:
    return len(self.images)

  @property
  def examples_per_epoch(self) -> int:
    return len(self.images)

  def gather(self, order: np.ndarray, rng: np.random.Generator, augment: bool,
             keep: slice = slice(None)) -> np.ndarray:
    """Examples ``order[keep]``, augmented with the draws the whole ``order`` makes (so each
    process of a multi-host run gathers only its slice and still gets the same images)."""
    draws = augmentation_draws(rng, len(order)) if augment else None
    return augmented(self.images[order[keep]], draws, keep)


class FolderSource:
  """HR images of any size (a folder): training takes random ``crop_size`` crops of them.

  Each epoch draws ``patches_per_image`` crops per image on average. By default every image
  gives the same number (as BasicSR samples); with ``crops_by_area`` each image gives crops in
  proportion to its area, so a large photo is not seen as often as a thumbnail would be.
  """

  def __init__(self, images: Sequence[np.ndarray], names: Sequence[str], crop_size: int,
               patches_per_image: int, name: str, crops_by_area: bool = False,
               positions: CropPositions | None = None):
    self.image_list = list(images)
    self.names = list(names)
    self.crop_size = crop_size
    self.patches_per_image = patches_per_image
    self.name = name
    # With ``positions`` (``informative_crop_positions``) an epoch visits each kept position
    # once, moved by up to its grid step so that the same pixels do not recur exactly.
    self.positions = positions
    count = len(self.image_list)
    if positions is not None:
      self._image_of_example = positions.images
    elif crops_by_area:
      areas = np.array([image.shape[0] * image.shape[1] for image in self.image_list], np.float64)
      crops = np.maximum(1, np.round(areas / areas.mean() * patches_per_image)).astype(np.int64)
      self._image_of_example = np.repeat(np.arange(count), crops)
    else:
      self._image_of_example = np.arange(count * patches_per_image) % count
    self._heights = np.array([image.shape[0] for image in self.image_list])
    self._widths = np.array([image.shape[1] for image in self.image_list])

  def __len__(self) -> int:
    return len(self.image_list)

  @property
  def examples_per_epoch(self) -> int:
    return len(self._image_of_example)

  def gather(self, order: np.ndarray, rng: np.random.Generator, augment: bool,
             keep: slice = slice(None)) -> np.ndarray:
    """Random crops for examples ``order[keep]``. Every crop position and augmentation is
    drawn for the whole ``order`` first (cheap), and only the kept crops are cut: a process of
    a multi-host run does the per-image work of its own slice alone."""
    size = self.crop_size
    images = self._image_of_example[order]
    if self.positions is None:
      tops, lefts, draws = crop_draws(rng, self._heights[images], self._widths[images], size,
                                      augment)
    else:
      tops, lefts, draws = self.positions.draws(rng, order, self._heights[images] - size,
                                                self._widths[images] - size, augment)
    batch = np.empty((len(images[keep]), size, size, 3), np.uint8)
    for i, (index, top, left) in enumerate(zip(images[keep], tops[keep], lefts[keep])):
      batch[i] = self.image_list[index][top:top + size, left:left + size]
    return augmented(batch, draws, keep)


class PairedFolderSource:
  """Real LR/HR pairs (RealSR, DRealSR): training takes an HR crop of ``crop_size`` and the LR
  crop of ``crop_size / scale`` at the same place (HR offsets are multiples of the scale), with
  the same flips and rotations; ``patches_per_image`` crops per pair per epoch."""

  def __init__(self, hr_images: Sequence[np.ndarray], lr_images: Sequence[np.ndarray],
               names: Sequence[str], crop_size: int, scale: int, patches_per_image: int,
               name: str):
    self.hr_images, self.lr_images = list(hr_images), list(lr_images)
    self.names = list(names)
    self.crop_size, self.scale = crop_size, scale
    self.name = name
    count = len(self.hr_images)
    self._image_of_example = np.arange(count * patches_per_image) % count
    self._lr_heights = np.array([image.shape[0] for image in self.lr_images])
    self._lr_widths = np.array([image.shape[1] for image in self.lr_images])

  def __len__(self) -> int:
    return len(self.hr_images)

  @property
  def examples_per_epoch(self) -> int:
    return len(self._image_of_example)

  def gather(self, order: np.ndarray, rng: np.random.Generator, augment: bool,
             keep: slice = slice(None)) -> dict[str, np.ndarray]:
    """Aligned crops ``{'hr', 'lr'}`` for examples ``order[keep]`` (draws as ``FolderSource``)."""
    scale, lr_size = self.scale, self.crop_size // self.scale
    images = self._image_of_example[order]
    tops, lefts, draws = crop_draws(rng, self._lr_heights[images], self._lr_widths[images],
                                    lr_size, augment)
    count = len(images[keep])
    hr = np.empty((count, self.crop_size, self.crop_size, 3), np.uint8)
    lr = np.empty((count, lr_size, lr_size, 3), np.uint8)
    for i, (index, top, left) in enumerate(zip(images[keep], tops[keep], lefts[keep])):
      lr[i] = self.lr_images[index][top:top + lr_size, left:left + lr_size]
      hr[i] = self.hr_images[index][top * scale:(top + lr_size) * scale,
                                    left * scale:(left + lr_size) * scale]
    return {'hr': augmented(hr, draws, keep), 'lr': augmented(lr, draws, keep)}


class StoreSource:
  """HR sub-images from a prepared store (``flax_sr.prepare``), read at random when a batch
  needs them: training data larger than memory. ``patches_per_image`` random ``crop_size``
  crops per sub-image per epoch; sub-images smaller than the crop are left out."""

  def __init__(self, store, crop_size: int, patches_per_image: int, name: str):
    self.store = store
    self.crop_size = crop_size
    self.name = name
    usable = np.flatnonzero((store.heights >= crop_size) & (store.widths >= crop_size))
    if not len(usable):
      raise DataError(f'{name}: no sub-image is at least {crop_size}x{crop_size} (the store\'s '
                      f'sub-images are up to {store.manifest["crop_size"]} px); lower --hr_size '
                      f'or prepare the store with a larger --crop_size')
    self._record_of_example = np.tile(usable, patches_per_image)

  def __len__(self) -> int:
    return len(self.store)

  @property
  def examples_per_epoch(self) -> int:
    return len(self._record_of_example)

  def gather(self, order: np.ndarray, rng: np.random.Generator, augment: bool,
             keep: slice = slice(None)) -> np.ndarray:
    """Random crops for examples ``order[keep]``, drawn as ``FolderSource`` draws them; only
    the kept records are read."""
    size = self.crop_size
    records = self._record_of_example[order]
    tops, lefts, draws = crop_draws(rng, self.store.heights[records],
                                    self.store.widths[records], size, augment)
    batch = self.store.read_crops(records[keep], tops[keep], lefts[keep], size)
    return augmented(batch, draws, keep)


# Name endings that mark a file as the HR or LR member of a pair and are not part of the pair's
# name: RealSR's Canon_001_HR.png / Canon_001_LR4.png, DIV2K's 0001.png / 0001x4.png.
_PAIR_MARK = re.compile(r'([_-](hr|lr\d*)|x\d+)$', re.IGNORECASE)


def pair_key(relative_path: str) -> str:
  """The name two files of a pair share: the path without its suffix and without a trailing
  ``_HR``, ``_LR<n>`` or ``x<n>``."""
  path = pathlib.PurePath(relative_path)
  return str(path.with_name(_PAIR_MARK.sub('', path.stem) or path.stem))


def load_image_pairs(hr_directory, lr_directory, scale: int, min_lr_size: int = 1
                     ) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[bool]]:
  """The LR/HR pairs of two folders: (HR images, LR images, HR names, HR grey flags), each HR
  image cropped to exactly ``scale`` times its partner (MATLAB's modcrop, when the HR side is
  up to ``scale - 1`` pixels larger).

  Every HR image must have one LR partner, and the reverse, with ``HR size // scale == LR
  size``; otherwise a ``DataError`` lists the first offenders, and nothing trains.
  """
  hr = load_folder_images(hr_directory)
  lr = load_folder_images(lr_directory)
  problems: list[str] = []
  lr_by_key: dict[str, int] = {}
  for i, name in enumerate(lr.names):
    key = pair_key(name)
    if key in lr_by_key:
      problems.append(f'{name} and {lr.names[lr_by_key[key]]} in {lr_directory} are both '
                      f'named {key}')
    lr_by_key[key] = i
  hr_images, lr_images, names, gray, used = [], [], [], [], set()
  for image, name, is_gray in zip(hr.images, hr.names, hr.gray):
    key = pair_key(name)
    if key not in lr_by_key:
      problems.append(f'{name} has no LR partner')
      continue
    used.add(key)
    partner = lr.images[lr_by_key[key]]
    lh, lw = partner.shape[:2]
    if (image.shape[0] // scale, image.shape[1] // scale) != (lh, lw):
      problems.append(f'{name} is {image.shape[1]}x{image.shape[0]} but its LR partner '
                      f'{lr.names[lr_by_key[key]]} is {lw}x{lh} (x{scale} needs '
                      f'{image.shape[1] // scale}x{image.shape[0] // scale})')
      continue
    if min(lh, lw) < min_lr_size:
      problems.append(f'{lr.names[lr_by_key[key]]} is {lw}x{lh}, smaller than '
                      f'{min_lr_size}x{min_lr_size}')
      continue
    hr_images.append(image[:lh * scale, :lw * scale])
    lr_images.append(partner)
    names.append(name)
    gray.append(is_gray)
  problems += [f'{lr.names[i]} has no HR partner' for key, i in lr_by_key.items()
               if key not in used]
  if problems:
    shown = '; '.join(problems[:4])
    more = f'; and {len(problems) - 4} more' if len(problems) > 4 else ''
    raise DataError(f'LR/HR pairs in {hr_directory} and {lr_directory}: {len(problems)} '
                    f'problem(s): {shown}{more}')
  return hr_images, lr_images, names, gray


def with_downscaled_copies(images: Sequence[np.ndarray], names: Sequence[str],
                           scales: Sequence[float], min_size: int
                           ) -> tuple[list[np.ndarray], list[str]]:
  """The images plus copies downscaled by each factor in ``scales`` below 1 (bicubic with
  antialiasing), the augmentation SRCNN, FSRCNN and VDSR apply to small training sets like T91:
  the same content at other scales teaches the network more than repeating it. Copies smaller
  than ``min_size`` on a side are left out."""
  from PIL import Image
  out_images, out_names = [], []
  for image, name in zip(images, names):
    for scale in sorted(set(scales), reverse=True):
      if scale >= 1.0:
        out_images.append(image)
        out_names.append(name)
        continue
      height, width = (round(n * scale) for n in image.shape[:2])
      if min(height, width) < min_size:
        continue
      copy = Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
      out_images.append(np.asarray(copy, dtype=np.uint8))
      out_names.append(f'{name}@{scale:g}')
  return out_images, out_names


class CropPositions(NamedTuple):
  """Crop positions to train on: image index, top and left of each, on a grid of ``step``."""
  images: np.ndarray
  tops: np.ndarray
  lefts: np.ndarray
  step: int

  def draws(self, rng: np.random.Generator, chosen: np.ndarray, max_tops: np.ndarray,
            max_lefts: np.ndarray, augment: bool):
    """Like ``crop_draws`` for positions ``chosen``: each moved down and right by a random
    0..step-1 pixels (kept inside its image), then the augmentation draws."""
    tops = np.minimum(self.tops[chosen] + rng.integers(0, self.step, len(chosen)), max_tops)
    lefts = np.minimum(self.lefts[chosen] + rng.integers(0, self.step, len(chosen)), max_lefts)
    return tops, lefts, augmentation_draws(rng, len(chosen)) if augment else None


def bicubic_error_map(image: np.ndarray, scale: int) -> np.ndarray:
  """Per-pixel squared error (mean over channels) of bicubic downscaling by ``scale`` and
  upscaling back, over the image cropped to a multiple of the scale: where SR has work to do.
  PIL's bicubic (not MATLAB's): this only ranks crops."""
  from PIL import Image
  height, width = image.shape[0] // scale * scale, image.shape[1] // scale * scale
  hr = Image.fromarray(np.ascontiguousarray(image[:height, :width]))
  lr = hr.resize((width // scale, height // scale), Image.Resampling.BICUBIC)
  up = np.asarray(lr.resize((width, height), Image.Resampling.BICUBIC), np.float32)
  return np.mean(np.square(np.asarray(hr, np.float32) - up), axis=-1)


def informative_crop_positions(images: Sequence[np.ndarray], crop_size: int, scale: int,
                               keep_fraction: float, step: int | None = None) -> CropPositions:
  """The ``keep_fraction`` of all crop positions (a grid of ``step``, default a sixth of the
  crop, over every image) where bicubic upscaling is furthest from the image, i.e. whose
  bicubic PSNR is lowest: the patch sampling of SamplingAug (Wang et al., BMVC 2021), which
  spends training on edges and texture instead of sky and walls. Crop sums come from an
  integral image of ``bicubic_error_map``, so ranking every position costs one pass."""
  step = step or max(1, crop_size // 6)
  found_images, found_tops, found_lefts, found_scores = [], [], [], []
  for index, image in enumerate(images):
    errors = bicubic_error_map(image, scale)
    height, width = errors.shape
    if height < crop_size or width < crop_size:
      continue
    integral = np.pad(errors.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    tops = np.arange(0, height - crop_size + 1, step)
    lefts = np.arange(0, width - crop_size + 1, step)
    bottoms, rights = tops + crop_size, lefts + crop_size
    sums = (integral[np.ix_(bottoms, rights)] - integral[np.ix_(tops, rights)]
            - integral[np.ix_(bottoms, lefts)] + integral[np.ix_(tops, lefts)])
    grid_tops, grid_lefts = np.meshgrid(tops, lefts, indexing='ij')
    found_images.append(np.full(sums.size, index))
    found_tops.append(grid_tops.ravel())
    found_lefts.append(grid_lefts.ravel())
    found_scores.append(sums.ravel())
  if not found_scores:
    raise DataError(f'no image is at least {crop_size}x{crop_size} after cropping to a '
                    f'multiple of the scale {scale}')
  scores = np.concatenate(found_scores)
  count = max(1, round(keep_fraction * len(scores)))
  # The hardest ``count``; ties at the threshold go by position (stable sort), not at random.
  kept = np.sort(np.argsort(-scores, kind='stable')[:count])
  return CropPositions(np.concatenate(found_images)[kept], np.concatenate(found_tops)[kept],
                       np.concatenate(found_lefts)[kept], step)


def augmentation_draws(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
  """For each of ``count`` images: flip it horizontally (0/1), and how many quarter turns."""
  return rng.integers(0, 2, count), rng.integers(0, 4, count)


def crop_draws(rng: np.random.Generator, heights: np.ndarray, widths: np.ndarray, size: int,
               augment: bool):
  """The random choices of a batch of ``size`` crops from images of these sizes, drawn for the
  whole (global) batch in one fixed order: (tops, lefts, augmentation draws or None)."""
  tops = rng.integers(0, heights - size + 1)
  lefts = rng.integers(0, widths - size + 1)
  return tops, lefts, augmentation_draws(rng, len(heights)) if augment else None


def augmented(batch: np.ndarray, draws, keep: slice) -> np.ndarray:
  """``batch`` (the kept examples) with their part of ``draws`` applied (None: as it is)."""
  return batch if draws is None else augment_batch(batch, *(d[keep] for d in draws))


def augment_batch(batch: np.ndarray, flips: np.ndarray, turns: np.ndarray) -> np.ndarray:
  """Horizontal flips and 0/90/180/270-degree rotations of (square) images, as drawn by
  ``augmentation_draws``."""
  out = np.empty_like(batch)
  # Moved as one opaque item per pixel (all its channels): numpy's strided copies of a
  # rotation then move pixels, not single bytes (2-3x faster for uint8 RGB).
  pixels = pixel_items(np.ascontiguousarray(batch))
  out_pixels = pixel_items(out)
  for i, image in enumerate(pixels):
    image = image[:, ::-1] if flips[i] else image
    out_pixels[i] = np.rot90(image, turns[i]) if image.shape[0] == image.shape[1] else image
  return out


def pixel_items(images: np.ndarray) -> np.ndarray:
  """A view of contiguous (..., H, W, C) ``images`` as (..., H, W) items of all C channels."""
  return images.view(np.dtype((np.void, images.shape[-1] * images.itemsize)))[..., 0]


# ----------------------------------------------------------------------------------------------
# Loading.


def _host_reachable(address: tuple[str, int], timeout: float = 5.0) -> bool:
  try:
    with socket.create_connection(address, timeout=timeout):
      return True
  except OSError:
    return False


def stl10_builder(data_dir: str | None, download: bool = True):
  """The tfds STL-10 builder, prepared; a clear ``DataError`` instead of minutes of retries when
  it is not prepared in ``data_dir`` and the download host cannot be reached."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')  # TensorFlow must not take the accelerator's memory
  import tensorflow_datasets as tfds

  if data_dir is not None:
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
  builder = tfds.builder('stl10', data_dir=data_dir)
  if builder.is_prepared():
    return builder
  where = data_dir or builder.data_dir
  ways_out = ('pass --data_dir of a prepared copy, or train on your own images with '
              '--dataset folder --data_dir DIR, or on the embedded sample with --dataset sample')
  if not download:
    raise DataError(f'STL-10 is not prepared in {where}; {ways_out}')
  if not _host_reachable(STL10_DOWNLOAD_HOST):
    raise DataError(f'STL-10 is not prepared in {where} and its download host '
                    f'{STL10_DOWNLOAD_HOST[0]} cannot be reached (offline?); {ways_out}')
  logging.info('Downloading and preparing STL-10 (2.5 GB) into %s', where)
  builder.download_and_prepare()
  return builder


def _available_memory_bytes() -> int:
  try:
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError):
    return 1 << 62


def load_stl10(data_dir: str | None, split: str, max_examples: int | None = None,
               download: bool = True, progress: Callable[[int, int], None] | None = None
               ) -> ArraySource:
  """Decodes an STL-10 split (or its first ``max_examples`` images) into memory."""
  builder = stl10_builder(data_dir, download=download)
  splits = builder.info.splits
  if splits and split not in splits:
    raise DataError(f'STL-10 in {builder.data_dir} has no split {split!r} '
                    f'(it has {", ".join(splits)})')
  expected = splits[split].num_examples if splits else 0
  if max_examples is not None:
    expected = min(expected, max_examples) if expected else max_examples
  needed = expected * 96 * 96 * 3
  if needed > 0.8 * _available_memory_bytes():
    raise DataError(f'STL-10 {split} needs {needed / 2**30:.1f} GiB in memory, more than is free; '
                    f'limit it with --eval_examples or use a machine with more memory')
  import tensorflow_datasets as tfds
  # No tfds auto-cache: we decode once into memory ourselves.
  dataset = builder.as_dataset(split=split, shuffle_files=False,
                               read_config=tfds.ReadConfig(try_autocache=False))
  if max_examples is not None:
    dataset = dataset.take(max_examples)
  dataset = dataset.map(lambda example: example['image'], num_parallel_calls=16)
  chunks, filled = [], 0
  for chunk in tfds.as_numpy(dataset.batch(1024).prefetch(2)):
    chunks.append(chunk)
    filled += len(chunk)
    if progress is not None:
      progress(filled, expected)
  if not filled:
    raise DataError(f'STL-10 {split} in {builder.data_dir} holds no images')
  return ArraySource(np.concatenate(chunks), f'stl10/{split}')


# DIV2K (tfds ``div2k``, configurations in ``config.DIV2K_CONFIGS``): training uses the HR.
DIV2K_DOWNLOAD_HOST = ('data.vision.ee.ethz.ch', 443)


def div2k_builder(data_dir: str | None, config_name: str, download: bool = True):
  """The tfds DIV2K builder of ``config_name``, prepared; as ``stl10_builder``, a one-line
  ``DataError`` in seconds when it is not prepared and cannot be downloaded."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  import tensorflow_datasets as tfds
  if data_dir is not None:
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
  builder = tfds.builder(f'div2k/{config_name}', data_dir=data_dir)
  if builder.is_prepared():
    return builder
  where = data_dir or builder.data_dir
  ways_out = ('pass --data_dir of a prepared copy (tfds div2k, e.g. prepared with '
              "file_format='array_record' to stream it), or cut the images into a store with "
              'python -m flax_sr.prepare and use --dataset prepared')
  if not download:
    raise DataError(f'DIV2K ({config_name}) is not prepared in {where}; {ways_out}')
  if not _host_reachable(DIV2K_DOWNLOAD_HOST):
    raise DataError(f'DIV2K ({config_name}) is not prepared in {where} and its download host '
                    f'{DIV2K_DOWNLOAD_HOST[0]} cannot be reached (offline?); {ways_out}')
  logging.info('Downloading and preparing DIV2K %s (about 4 GB) into %s', config_name, where)
  builder.download_and_prepare(file_format='array_record')
  return builder


def _decode_png(data: bytes) -> np.ndarray:
  import io
  from PIL import Image
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert('RGB'), dtype=np.uint8)


class TfdsImageSource:
  """HR crops from a tfds split read at random (``builder.as_data_source``: the split must be
  prepared as ArrayRecord): only the images a batch needs are read and decoded (PNG, here, not
  by TensorFlow). Picklable: worker processes open the data source themselves.

  Crop positions are drawn as fractions of each image's free range (the sizes are known only
  once an image is decoded), so a batch is still a pure function of its draws."""

  def __init__(self, data_dir: str, config_name: str, split: str, crop_size: int,
               patches_per_image: int, name: str, count: int):
    self.data_dir, self.config_name, self.split = data_dir, config_name, split
    self.crop_size = crop_size
    self.name = name
    self._image_of_example = np.arange(count * patches_per_image) % count
    self._source = None

  def _data_source(self):
    if self._source is None:
      import tensorflow_datasets as tfds
      builder = tfds.builder(f'div2k/{self.config_name}', data_dir=self.data_dir)
      self._source = builder.as_data_source(
          self.split, decoders={'hr': tfds.decode.SkipDecoding(),
                                'lr': tfds.decode.SkipDecoding()})
    return self._source

  def __getstate__(self):
    return dict(self.__dict__, _source=None)

  @property
  def examples_per_epoch(self) -> int:
    return len(self._image_of_example)

  def gather(self, order: np.ndarray, rng: np.random.Generator, augment: bool,
             keep: slice = slice(None)) -> np.ndarray:
    size = self.crop_size
    images = self._image_of_example[order]
    fractions = rng.random((2, len(order)))
    draws = augmentation_draws(rng, len(order)) if augment else None
    images, fractions = images[keep], fractions[:, keep]
    source = self._data_source()
    batch = np.empty((len(images), size, size, 3), np.uint8)
    for i, index in enumerate(images):
      image = _decode_png(source[int(index)]['hr'])
      h, w = image.shape[:2]
      if min(h, w) < size:
        raise DataError(f'{self.name}: image {index} is {w}x{h}, smaller than --hr_size {size}')
      top, left = (int(f * (n - size + 1)) for f, n in zip(fractions[:, i], (h, w)))
      batch[i] = image[top:top + size, left:left + size]
    return augmented(batch, draws, keep)


def _div2k_images(builder, split: str, keys: tuple[str, ...], limit: int | None = None
                  ) -> list[dict[str, np.ndarray]]:
  """Decoded images of a split in tfds' order, [{key: uint8 image}]: through the data source
  for an ArrayRecord copy (tfds cannot ``as_dataset`` those), else through ``as_dataset``."""
  import tensorflow_datasets as tfds
  try:
    source = builder.as_data_source(split, decoders={k: tfds.decode.SkipDecoding()
                                                     for k in ('hr', 'lr')})
  except Exception:  # a tfrecord copy: no random access
    dataset = builder.as_dataset(split=split, shuffle_files=False,
                                 read_config=tfds.ReadConfig(try_autocache=False))
    if limit is not None:
      dataset = dataset.take(limit)
    return [{key: np.asarray(example[key]) for key in keys}
            for example in tfds.as_numpy(dataset)]
  count = len(source) if limit is None else min(limit, len(source))
  return [{key: _decode_png(source[i][key]) for key in keys} for i in range(count)]


def load_div2k_train(config) -> 'TfdsImageSource | FolderSource':
  """DIV2K's 800 HR training images: streamed through the tfds data source when the split is
  prepared as ArrayRecord, else (tfrecord, tfds' default) decoded into memory once."""
  builder = div2k_builder(config.data_dir, config.div2k_config)
  name = f'div2k/{config.div2k_config} train'
  try:
    count = len(builder.as_data_source('train'))
  except Exception as error:  # tfds says so in several ways for non-random-access formats
    splits = builder.info.splits
    count = splits['train'].num_examples if splits else 800
    logging.info('DIV2K in %s is not in a random-access format (%s): decoding its %d training '
                 'images into memory', builder.data_dir, type(error).__name__, count)
    needed = count * 2040 * 1400 * 3
    if needed > 0.8 * _available_memory_bytes():
      raise DataError(f'{name} needs about {needed / 2**30:.0f} GiB in memory, more than is '
                      f'free; prepare it with file_format=array_record to stream it, or use '
                      f'python -m flax_sr.prepare and --dataset prepared') from error
    images = [e['hr'] for e in _div2k_images(builder, 'train', ('hr',))]  # decoded once
    return FolderSource(images, [f'{i:04d}' for i in range(len(images))], config.hr_size,
                        config.patches_per_image, name)
  return TfdsImageSource(config.data_dir, config.div2k_config, 'train', config.hr_size, config.patches_per_image,
                         name, count)


def div2k_eval_set(config) -> 'EvalSet':
  """DIV2K's validation images (0801-0900): HR, each cropped to a multiple of the scale; with
  ``--eval_dataset_lr`` also the configuration's own LR images, which the evaluation then
  upscales instead of a bicubic LR."""
  builder = div2k_builder(config.data_dir, config.div2k_config)
  keys = ('hr', 'lr') if config.eval_dataset_lr else ('hr',)
  examples = _div2k_images(builder, 'validation', keys, config.eval_examples)
  scale = config.scale
  hr_images, lr_images = [], []
  for example in examples:
    hr = example['hr']
    if config.eval_dataset_lr:
      lr = example['lr']
      if (hr.shape[0] // scale, hr.shape[1] // scale) != lr.shape[:2]:
        raise DataError(f'div2k/{config.div2k_config}: an LR image is {lr.shape[1]}x'
                        f'{lr.shape[0]} for an HR image of {hr.shape[1]}x{hr.shape[0]}: not '
                        f'x{scale} (--input_size/--hr_size); use the configuration of your '
                        f'scale')
      hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
      lr_images.append(lr)
    else:
      hr = hr[:hr.shape[0] - hr.shape[0] % scale, :hr.shape[1] - hr.shape[1] % scale]
    hr_images.append(hr)
  what = f'div2k/{config.div2k_config} validation' + (', its own LR' if lr_images else '')
  return EvalSet(hr_images, [f'{801 + i:04d}' for i in range(len(hr_images))], what,
                 lr_images=lr_images or None)


# Pillow modes of one-channel files (with or without alpha): their own Y in the SR protocol.
GRAY_MODES = frozenset({'1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'})


def read_image_and_gray(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
  """Reads an image file as uint8 RGB, and whether the file holds one channel (grey).

  Grey is decided by the file, not by the pixels, as MATLAB's evaluation scripts decide it: an
  RGB file whose channels happen to be equal (Set14's ``man.png``) is still colour and goes
  through ``rgb2ycbcr``. 16-bit files are scaled to 8 bits (rounded, 65535 -> 255), EXIF
  orientation is applied, palette and transparency are converted (transparent pixels composited
  on black, as most SR toolkits' readers do).
  """
  from PIL import Image, ImageOps
  with Image.open(path) as image:
    image = ImageOps.exif_transpose(image)
    gray = image.mode in GRAY_MODES
    if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
      values = np.asarray(image, dtype=np.float64)
      # 16-bit PNGs (mode I / I;16) span 0..65535; Pillow's own convert would clip them to 255.
      values = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
      return np.repeat(values[..., None], 3, axis=-1), gray
    if image.mode in ('RGBA', 'LA', 'La', 'PA') or (image.mode == 'P'
                                                    and 'transparency' in image.info):
      image = image.convert('RGBA')
      background = Image.new('RGBA', image.size, (0, 0, 0, 255))
      image = Image.alpha_composite(background, image)
    return np.asarray(image.convert('RGB'), dtype=np.uint8), gray


def read_image(path: str | os.PathLike) -> np.ndarray:
  """Reads an image file as uint8 RGB (see ``read_image_and_gray``)."""
  return read_image_and_gray(path)[0]


def list_images(directory: str | os.PathLike) -> list[pathlib.Path]:
  root = pathlib.Path(directory)
  if not root.is_dir():
    raise DataError(f'image folder {directory} does not exist or is not a folder')
  return sorted(p for p in root.rglob('*') if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class FolderImages(NamedTuple):
  """The usable images of a folder: uint8 RGB arrays, their relative paths, and which files
  hold one channel (grey)."""
  images: list[np.ndarray]
  names: list[str]
  gray: list[bool]
  skipped: list[str]


def split_folders(directories: str | os.PathLike) -> list[str]:
  """``'T91/,BSD200/'`` -> ``['T91/', 'BSD200/']``: ``--data_dir`` of ``--dataset folder`` may
  name several folders, comma-separated (the "291" set is T91 + BSD200, kept apart on disk)."""
  folders = [part.strip() for part in str(directories).split(',')]
  if not all(folders):
    raise DataError(f'--data_dir {directories!r} has an empty folder name between its commas')
  if len(set(folders)) != len(folders):
    raise DataError(f'--data_dir {directories!r} names a folder twice')
  return folders


def load_folder_images(directory: str | os.PathLike, min_size: int = 1) -> FolderImages:
  """Every PNG/JPEG/BMP under ``directory`` (recursive), as uint8 RGB.

  ``directory`` may list several folders separated by commas (``split_folders``); their images
  are concatenated and each name is then prefixed by its folder's name, so names stay unique.
  Unreadable files and images smaller than ``min_size`` are skipped with a warning naming them,
  and a final count; a folder with no usable image is a ``DataError``.
  """
  folders = split_folders(directory)
  if len(folders) > 1:
    parts = [load_folder_images(folder, min_size) for folder in folders]
    prefixes = [pathlib.Path(folder).name or pathlib.Path(folder).resolve().name
                for folder in folders]
    if len(set(prefixes)) != len(prefixes):  # a/images,b/images: keep the whole path
      prefixes = folders
    prefixed = lambda prefix, names: [f'{prefix}/{name}' for name in names]
    return FolderImages(
        [image for part in parts for image in part.images],
        [name for prefix, part in zip(prefixes, parts) for name in prefixed(prefix, part.names)],
        [flag for part in parts for flag in part.gray],
        [name for prefix, part in zip(prefixes, parts)
         for name in prefixed(prefix, part.skipped)])
  paths = list_images(directory)
  images, names, gray, skipped = [], [], [], []
  for path in paths:
    name = str(path.relative_to(directory))
    try:
      image, is_gray = read_image_and_gray(path)
    except Exception as error:  # Pillow raises many types for broken files
      logging.warning('skipping unreadable image %s (%s)', path, type(error).__name__)
      skipped.append(name)
      continue
    if min(image.shape[:2]) < min_size:
      logging.warning('skipping %s: %dx%d is smaller than %dx%d', path, image.shape[1],
                      image.shape[0], min_size, min_size)
      skipped.append(name)
      continue
    images.append(image)
    names.append(name)
    gray.append(is_gray)
  if skipped:
    logging.warning('%s: using %d images, skipped %d', directory, len(images), len(skipped))
  if not images:
    raise DataError(f'no usable image (PNG/JPEG/BMP of at least {min_size}x{min_size}) '
                    f'under {directory}')
  return FolderImages(images, names, gray, skipped)


# The embedded sample: colour photographs that ship inside scikit-image's wheel.
SAMPLE_TRAIN_PHOTOS = ('astronaut.png', 'coffee.png', 'motorcycle_left.png', 'rocket.jpg',
                       'ihc.png', 'retina.jpg', 'hubble_deep_field.jpg', 'color.png')
SAMPLE_EVAL_PHOTOS = ('chelsea.png', 'motorcycle_right.png')


def _sample_photo_dir() -> pathlib.Path:
  try:
    import skimage
  except ImportError as error:
    raise DataError('--dataset sample needs scikit-image (pip install scikit-image)') from error
  return pathlib.Path(skimage.__file__).parent / 'data'


def load_sample(split: str = 'train', crop_size: int = 96) -> ArraySource:
  """The embedded sample as non-overlapping 96x96 HR crops; 'train' and held-out 'eval' photos."""
  photos = SAMPLE_TRAIN_PHOTOS if split == 'train' else SAMPLE_EVAL_PHOTOS
  directory = _sample_photo_dir()
  crops = []
  for photo in photos:
    image = read_image(directory / photo)
    rows, cols = image.shape[0] // crop_size, image.shape[1] // crop_size
    for r in range(rows):
      for c in range(cols):
        crops.append(image[r * crop_size:(r + 1) * crop_size, c * crop_size:(c + 1) * crop_size])
  return ArraySource(np.stack(crops), f'sample/{split}')


# ----------------------------------------------------------------------------------------------
# The training stream.


def local_batch_slice(global_batch: int, process_index: int, process_count: int) -> slice:
  if global_batch % process_count:
    raise UserError(f'--batch_size {global_batch} is not divisible by the {process_count} '
                    f'processes')
  per_process = global_batch // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


class BatchMaker:
  """Global batch number -> this process's part of it: a pure function of the number, which is
  what makes the stream reproducible and resumable, and what a worker process runs.

  Batch ``n`` is batch ``n % steps_per_epoch`` of epoch ``n // steps_per_epoch``; the order of
  epoch ``e`` is ``default_rng([seed, e]).permutation``; crops and augmentation are drawn from a
  generator keyed on ``(seed, epoch, batch)`` for the whole global batch, and only this
  process's ``local_slice`` is cut. Picklable (sent to grain's workers)."""

  def __init__(self, source, global_batch: int, seed: int, augment: bool, local_slice: slice):
    self.source = source
    self.global_batch = global_batch
    self.seed = seed
    self.augment = augment
    self.local_slice = local_slice
    self.steps_per_epoch = source.examples_per_epoch // global_batch
    self._order: tuple[int, np.ndarray] | None = None  # the last epoch's order, cached

  def epoch_order(self, epoch: int) -> np.ndarray:
    if self._order is None or self._order[0] != epoch:
      self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(
          self.source.examples_per_epoch))
    return self._order[1]

  def batch(self, epoch: int, index: int) -> dict[str, np.ndarray]:
    order = self.epoch_order(epoch)
    global_ids = order[index * self.global_batch:(index + 1) * self.global_batch]
    rng = np.random.default_rng([self.seed, epoch, index, 1])
    images = self.source.gather(global_ids, rng, self.augment, keep=self.local_slice)
    return images if isinstance(images, dict) else {'hr': images}  # paired sources bring 'lr'

  def __call__(self, number: int) -> dict[str, np.ndarray]:
    return self.batch(*divmod(int(number), self.steps_per_epoch))

  def __getstate__(self):
    return dict(self.__dict__, _order=None)


# grain's datasets need an end; this one is never reached.
_ENDLESS = 1 << 50


class TrainStream:
  """Endless, seeded, resumable batches {'hr': uint8 (local_batch, H, W, 3)} from a source.

  ``next()`` returns ``(batch, position)`` where ``position = (epoch, batch_index)`` is where the
  stream continues after this batch, the value to checkpoint. Batches are produced (and, with
  ``put``, moved to devices) by a background thread ``prefetch`` batches ahead.

  With ``workers > 0`` the batches are made in that many worker processes by grain
  (``mp_prefetch``), and the main process only receives them: the way to stream from a
  prepared store. ``loader_state`` is then grain's iterator state at the consumer's position
  (saved in the checkpoint beside ``position``); passed back in, the stream continues there.
  Either way batch ``n`` is ``BatchMaker(n)``, so the batches do not depend on the worker count.
  """

  def __init__(self, source, global_batch: int, *, seed: int = 0, augment: bool = False,
               position: tuple[int, int] = (0, 0), process_index: int = 0,
               process_count: int = 1, prefetch: int = 2, put: Callable[[Any], Any] | None = None,
               workers: int = 0, loader_state: dict | None = None):
    self.source = source
    self.global_batch = global_batch
    self.seed = seed
    self.augment = augment
    self.steps_per_epoch = source.examples_per_epoch // global_batch
    if self.steps_per_epoch < 1:
      raise DataError(f'{source.name} has {source.examples_per_epoch} training examples per epoch,'
                      f' fewer than one batch of {global_batch}; lower --batch_size')
    self.local_slice = local_batch_slice(global_batch, process_index, process_count)
    self.maker = BatchMaker(source, global_batch, seed, augment, self.local_slice)
    self.position = tuple(position)
    self.workers = workers
    self.loader_state = loader_state if workers else None
    self._put = put or (lambda batch: batch)
    self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def epoch_order(self, epoch: int) -> np.ndarray:
    return self.maker.epoch_order(epoch)

  def make_batch(self, epoch: int, index: int) -> dict:
    """The local part of global batch ``index`` of ``epoch`` (a pure function of its inputs)."""
    return self.maker.batch(epoch, index)

  def _number(self, position) -> int:
    return position[0] * self.steps_per_epoch + position[1]

  def _worker_batches(self) -> Iterator[tuple[dict, dict]]:
    """(batch, grain state after it) from grain's worker processes, from ``self.position``."""
    import grain
    from absl import flags
    if not flags.FLAGS.is_parsed():  # grain reads absl flags; flax_sr's tools do not parse them
      flags.FLAGS.mark_as_parsed()
    state = self.loader_state
    resume = (state is not None and state.get('workers') == self.workers
              and self._number(self.position) >= state.get('start', -1))
    start = state['start'] if resume else self._number(self.position)
    # One thread per worker, no read-ahead inside it: the workers are the parallelism (grain's
    # default, 16 threads prefetching 500 batches in each worker, fights over the GIL and holds
    # hundreds of batches in memory).
    dataset = (grain.MapDataset.range(start, _ENDLESS).map(self.maker)
               .to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
               .mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers,
                                                         per_worker_buffer_size=2)))
    iterator = iter(dataset)
    if resume:
      iterator.set_state(state['grain'])
      logging.info("Data: %d worker processes, continuing from grain's saved iterator state",
                   self.workers)
    elif state is not None:
      logging.info('Data: %d worker processes (the checkpoint had %s); starting them at epoch '
                   '%d, batch %d', self.workers, state.get('workers'), *self.position)
    try:
      for batch in iterator:
        yield batch, {'start': start, 'workers': self.workers, 'grain': iterator.get_state()}
    finally:
      close = getattr(iterator, 'close', None)
      if close is not None:
        close()

  def _produce(self):
    epoch, index = self.position
    workers = self._worker_batches() if self.workers else None
    try:
      while not self._stop.is_set():
        if workers is not None:
          batch, loader_state = next(workers)
        else:
          batch, loader_state = self.maker.batch(epoch, index), None
        batch = self._put(batch)
        index += 1
        if index == self.steps_per_epoch:
          epoch, index = epoch + 1, 0
        while not self._stop.is_set():
          try:
            self._queue.put((batch, (epoch, index), loader_state), timeout=0.1)
            break
          except queue.Full:
            continue
    except BaseException as error:  # surfaced in the consumer's thread
      self._queue.put((error, None, None))
    finally:
      if workers is not None:
        workers.close()

  def __iter__(self) -> Iterator[tuple[dict, tuple[int, int]]]:
    return self

  def start(self) -> 'TrainStream':
    """Starts producing (and the worker processes) now, e.g. while the train step compiles;
    ``next`` starts it otherwise."""
    if self._thread is None:
      self._thread = threading.Thread(target=self._produce, daemon=True)
      self._thread.start()
    return self

  def __next__(self):
    self.start()
    batch, position, loader_state = self._queue.get()
    if isinstance(batch, BaseException):
      raise batch
    self.position = position
    self.loader_state = loader_state
    return batch, position

  def close(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)


# ----------------------------------------------------------------------------------------------
# Evaluation batches.


def eval_batches(images: np.ndarray, batch_size: int, pad_to_multiple: int = 1,
                 lr_images: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every image exactly once, in order: the last partial batch is padded (repeating its last
  image) and ``mask`` marks the real ones, so nothing is dropped and nothing counted twice.
  ``lr_images`` (optional) go along as ``lr``, padded alike."""
  batch_size = -(-batch_size // pad_to_multiple) * pad_to_multiple

  def padded(chunk, real):
    if real < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, axis=0)])
    return chunk
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    real = len(chunk)
    batch = {'hr': padded(chunk, real), 'mask': np.arange(batch_size) < real}
    if lr_images is not None:
      batch['lr'] = padded(lr_images[start:start + batch_size], real)
    yield batch


# ----------------------------------------------------------------------------------------------
# Sources for a run's configuration.


def make_train_source(config, progress=None):
  """The training source for ``config.dataset``."""
  if config.dataset == 'stl10':
    return load_stl10(config.data_dir, STL10_TRAIN_SPLIT, progress=progress)
  if config.dataset == 'sample':
    return load_sample('train')
  if config.dataset == 'div2k':
    return load_div2k_train(config)
  if config.dataset == 'prepared':
    from flax_sr import subimage_store
    store = subimage_store.SubimageStore(config.data_dir)
    return StoreSource(store, config.hr_size, config.patches_per_image,
                       f'prepared store {config.data_dir}')
  if config.lr_data_dir:
    hr, lr, names, _ = load_image_pairs(config.data_dir, config.lr_data_dir, config.scale,
                                        min_lr_size=config.input_size)
    return PairedFolderSource(hr, lr, names, config.hr_size, config.scale,
                              config.patches_per_image,
                              f'pairs {config.data_dir} + {config.lr_data_dir}')
  images, names, _, _ = load_folder_images(config.data_dir, min_size=config.hr_size)
  if tuple(config.image_scales) != (1.0,):
    images, names = with_downscaled_copies(images, names, config.image_scales, config.hr_size)
  positions = None
  if config.hard_crop_fraction:
    positions = informative_crop_positions(images, config.hr_size, config.scale,
                                           config.hard_crop_fraction)
  return FolderSource(images, names, config.hr_size, config.patches_per_image,
                      f'folder {config.data_dir}', crops_by_area=config.crops_by_area,
                      positions=positions)


class EvalSet:
  """Evaluation images: one uint8 array of same-size images, or a list of whole images of any
  size (each cropped to a multiple of the scale, as the SR literature evaluates)."""

  def __init__(self, images, names: Sequence[str], name: str,
               gray: Sequence[bool] | None = None, lr_images=None):
    self.images = images
    self.names = list(names)
    self.name = name
    self.gray = list(gray) if gray is not None else [False] * len(images)
    # Precomputed LR inputs (same structure as ``images``), e.g. realistically degraded ones;
    # None: the evaluation makes the bicubic LR itself.
    self.lr_images = lr_images

  @property
  def same_size(self) -> bool:
    return isinstance(self.images, np.ndarray)

  def __len__(self) -> int:
    return len(self.images)


def folder_eval_set(directory, scale: int, max_examples: int | None = None) -> EvalSet:
  """A folder's images for evaluation at ``scale``: each cropped to a multiple of the scale
  (MATLAB's ``modcrop``); grey where the file holds one channel (see ``read_image_and_gray``)."""
  folder = load_folder_images(directory, min_size=max(2 * scale, 11 + 2 * scale))
  images = [image[:image.shape[0] - image.shape[0] % scale, :image.shape[1] - image.shape[1] % scale]
            for image in folder.images[:max_examples]]
  return EvalSet(images, folder.names[:len(images)], f'folder {directory}',
                 folder.gray[:len(images)])


def make_eval_set(config) -> EvalSet:
  """The evaluation images for ``config``: STL-10 test, the sample's held-out photos, or a
  folder (``--eval_data_dir``, else the training folder itself)."""
  limit = config.eval_examples
  if config.dataset == 'stl10':
    source = load_stl10(config.data_dir, STL10_EVAL_SPLIT, max_examples=limit)
    return EvalSet(source.images, [f'{i:05d}' for i in range(len(source))], source.name)
  if config.dataset == 'div2k' and config.eval_data_dir is None:
    return div2k_eval_set(config)
  if config.dataset == 'sample' and config.eval_data_dir is None:
    source = load_sample('eval')
    images = source.images[:limit]
    return EvalSet(images, [f'{i:05d}' for i in range(len(images))], source.name)
  if config.eval_lr_data_dir:
    hr, lr, names, gray = load_image_pairs(config.eval_data_dir, config.eval_lr_data_dir,
                                           config.scale)
    return EvalSet(hr[:limit], names[:limit],
                   f'pairs {config.eval_data_dir} + {config.eval_lr_data_dir}', gray[:limit],
                   lr_images=lr[:limit])
  directory = config.eval_data_dir or config.data_dir
  if config.eval_data_dir is None:
    logging.warning('no --eval_data_dir: evaluating on the training folder %s', directory)
  return folder_eval_set(directory, config.scale, limit)
