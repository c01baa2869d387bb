"""A prepared store of HR sub-images: training data larger than memory, read at random.

BasicSR's practice for DIV2K-size sets: cut every HR image into overlapping sub-images
(480x480, step 240 by default), so that a training crop is one small read instead of decoding
a 2K photo. ``python -m flax_sr.prepare IMAGE_DIR OUT_DIR`` writes them; training reads them
with ``--dataset prepared --data_dir OUT_DIR``.

Layout of ``OUT_DIR``:

* ``subimages-NNNNN.array_record``: ArrayRecord shards (random access by record index), one
  per ``images_per_shard`` source images. Each sub-image is stored as bands of ``band_rows``
  rows, one record per band: a 12-byte header (rows, width, channels as little-endian uint32)
  and the raw uint8 pixels (zstd-compressed with ``--compression zstd``). A crop reads only the
  bands it overlaps (a 192 px crop of a 480 px sub-image: 7 of 15 bands of 32 rows), and
  reading a band is a copy, not a PNG decode: array-record's cost is per byte read.
* ``manifest.json``: the settings, and per shard its file name, record count, SHA-256, its
  source images and each record's height and width (a crop position is drawn without reading
  the record). Written last: a store without it is incomplete.
* ``progress.json`` while preparing: the shards completed so far (a restart continues there).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import threading
from typing import Any, Sequence

import numpy as np

from flax_sr.errors import UserError

FORMAT = 'flax_sr-subimages-2'
BAND_ROWS = 32
MANIFEST = 'manifest.json'
PROGRESS = 'progress.json'
_HEADER = np.dtype('<u4')
# A crop's bands are consecutive records of one shard, read with one range read each. No
# read-ahead (reads are random), and no threads inside the reader: the data loader's worker
# processes are the parallelism, and array-record's data source (a thread pool per batch, a
# parallel read per list of keys) was half of a worker's time per batch.
_READER_OPTIONS = 'readahead_buffer_size:0,max_parallelism:1'
_READER_BUFFER_BYTES = 1 << 15
COMPRESSIONS = ('zstd', 'none')


class StoreError(UserError):
  """A prepared store that is missing, incomplete, damaged or prepared differently."""


def subimage_starts(length: int, size: int, step: int, thresh_size: int) -> list[int]:
  """Where sub-images start along one side (BasicSR's ``extract_subimages``): every ``step``,
  plus one flush with the far edge when more than ``thresh_size`` pixels would be left over. A
  side shorter than ``size`` gives one sub-image of the whole side."""
  if length <= size:
    return [0]
  starts = list(range(0, length - size + 1, step))
  if length - (starts[-1] + size) > thresh_size:
    starts.append(length - size)
  return starts


def cut_subimages(image: np.ndarray, size: int, step: int, thresh_size: int
                  ) -> list[np.ndarray]:
  h, w = image.shape[:2]
  return [image[top:top + size, left:left + size]
          for top in subimage_starts(h, size, step, thresh_size)
          for left in subimage_starts(w, size, step, thresh_size)]


def encode_bands(image: np.ndarray, band_rows: int) -> list[bytes]:
  """The records of one sub-image: its bands of ``band_rows`` rows (the last may be shorter)."""
  return [encode_record(image[top:top + band_rows])
          for top in range(0, image.shape[0], band_rows)]


def encode_record(image: np.ndarray) -> bytes:
  image = np.ascontiguousarray(image, dtype=np.uint8)
  return np.asarray(image.shape, _HEADER).tobytes() + image.tobytes()


def decode_record(record: bytes) -> np.ndarray:
  shape = tuple(np.frombuffer(record, _HEADER, count=3))
  return np.frombuffer(record, np.uint8, offset=3 * _HEADER.itemsize).reshape(shape)


def writer_options(compression: str) -> str:
  # group_size 1: each record is its own chunk, so a random read decompresses one sub-image.
  return 'group_size:1,' + ('zstd:1' if compression == 'zstd' else 'uncompressed')


def sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as file:
    for block in iter(lambda: file.read(1 << 22), b''):
      digest.update(block)
  return digest.hexdigest()


def write_json(path: pathlib.Path, value: Any) -> None:
  temporary = path.with_name(f'.{path.name}.partial')
  temporary.write_text(json.dumps(value, indent=1))
  os.replace(temporary, path)  # never a half-written manifest


class SubimageStore:
  """Random access to a prepared store: ``len(store)`` records, ``store[i]`` a uint8 (H, W, 3)
  array, ``store.heights`` / ``store.widths`` without reading any record.

  Picklable: worker processes reopen the shards themselves (an open reader is not sent)."""

  def __init__(self, directory: str | os.PathLike, verify: bool = False):
    self.directory = pathlib.Path(directory).expanduser().absolute()
    manifest_path = self.directory / MANIFEST
    if not manifest_path.is_file():
      hint = (' (preparation did not finish: run python -m flax_sr.prepare again to complete '
              'it)' if (self.directory / PROGRESS).exists() else
              ' (make one with python -m flax_sr.prepare IMAGE_DIR OUT_DIR)')
      raise StoreError(f'{self.directory} holds no prepared store: {MANIFEST} is missing{hint}')
    try:
      self.manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
      raise StoreError(f'{manifest_path} is unreadable: {error}') from error
    if self.manifest.get('format') != FORMAT:
      raise StoreError(f'{manifest_path} is not a {FORMAT} manifest (a store from another '
                       f'flax_sr version: prepare it again)')
    shards = self.manifest['shards']
    for shard in shards:
      path = self.directory / shard['file']
      if not path.is_file():
        raise StoreError(f'{path} is missing (listed in {manifest_path})')
      if verify and sha256(path) != shard['sha256']:
        raise StoreError(f'{path} does not match its checksum in {manifest_path} (damaged or '
                         f'changed; prepare the store again)')
    self.paths = [str(self.directory / shard['file']) for shard in shards]
    sizes = np.array([size for shard in shards for size in shard['sizes']], np.int64)
    sizes = sizes.reshape(-1, 2)
    self.heights, self.widths = sizes[:, 0], sizes[:, 1]
    self.band_rows = int(self.manifest['band_rows'])
    # Sub-image i is records first_record[i] .. first_record[i] + bands[i] - 1 of shard
    # shard_of[i] (each shard's records numbered from 0, in the manifest's order).
    self.bands = -(-self.heights // self.band_rows)
    self.shard_of = np.repeat(np.arange(len(shards)), [shard['subimages'] for shard in shards])
    self.first_record = np.zeros(len(self.heights), np.int64)
    for shard in range(len(shards)):
      mine = np.flatnonzero(self.shard_of == shard)
      self.first_record[mine] = np.concatenate([[0], np.cumsum(self.bands[mine])[:-1]])
    self._readers: dict[int, Any] = {}
    self._lock = threading.Lock()  # a reader is not safe to share between threads

  def __len__(self) -> int:
    return len(self.heights)

  def _read_bands(self, index: int, first: int, count: int) -> list[bytes]:
    """Bands ``first`` .. ``first + count - 1`` of sub-image ``index``: one range read."""
    shard = int(self.shard_of[index])
    reader = self._readers.get(shard)
    if reader is None:
      from array_record.python import array_record_module
      reader = array_record_module.ArrayRecordReader(
          self.paths[shard], options=_READER_OPTIONS, file_reader_buffer_size=_READER_BUFFER_BYTES)
      self._readers[shard] = reader
    start = int(self.first_record[index]) + first
    return reader.read(start, start + count)

  def __getitem__(self, index: int) -> np.ndarray:
    index = int(index)
    return self.read_crops([index], [0], [0], (self.heights[index], self.widths[index]))[0]

  def read_crops(self, indices: Sequence[int], tops: Sequence[int], lefts: Sequence[int],
                 size) -> np.ndarray:
    """Crops of ``size`` (an int, or (height, width)) at (top, left) of sub-images
    ``indices``, as one uint8 array; reads only the bands each crop overlaps (one range
    read per crop)."""
    height, width = (size, size) if np.ndim(size) == 0 else size
    band = self.band_rows
    out = np.empty((len(indices), height, width, 3), np.uint8)
    with self._lock:
      for i, (index, top, left) in enumerate(zip(indices, tops, lefts)):
        first, last = top // band, (top + height - 1) // band
        row = 0
        for k, record in enumerate(self._read_bands(index, first, last - first + 1)):
          pixels = decode_record(record)
          start = top - (first + k) * band if k == 0 else 0
          rows = min(pixels.shape[0] - start, height - row)
          out[i, row:row + rows] = pixels[start:start + rows, left:left + width]
          row += rows
    return out

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k not in ('_readers', '_lock')}

  def __setstate__(self, state):
    self.__dict__.update(state, _readers={}, _lock=threading.Lock())
