"""What a run reports: TensorBoard event files (``tf.summary``), a JSON-lines copy of every
scalar, and a progress bar. Only process 0 writes; the others get a silent reporter."""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import sys
import time
from typing import Any, Mapping

import numpy as np

METRICS_FILE = 'metrics.jsonl'


class Reporter:

  def __init__(self, workdir: str | pathlib.Path, enabled: bool = True):
    self.enabled = enabled
    self.workdir = pathlib.Path(workdir)
    self._writer = None
    self._jsonl = None
    self.logdir = self.workdir / 'logs'
    if enabled:
      self._jsonl = open(self.workdir / METRICS_FILE, 'a', buffering=1)
      try:
        import tensorflow as tf
      except ImportError:  # e.g. an accelerator image without TF: JSON lines only
        logging.warning('tensorflow is not installed: no TensorBoard events, only %s',
                        self.workdir / METRICS_FILE)
      else:
        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(self.logdir))

  def scalars(self, step: int, values: Mapping[str, float]):
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    if self._writer is not None:
      with self._writer.as_default(step=int(step)):
        for name, value in values.items():
          self._tf.summary.scalar(name, value)
    # Strict JSON: a non-finite value (a diverged loss) is written as null.
    record = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
    self._jsonl.write(json.dumps({'step': int(step), 'time': time.time(), **record},
                                 allow_nan=False) + '\n')

  def images(self, step: int, images: Mapping[str, np.ndarray]):
    if self._writer is not None:
      with self._writer.as_default(step=int(step)):
        for name, image in images.items():
          self._tf.summary.image(name, np.asarray(image)[None])

  def flush(self):
    if self._writer is not None:
      self._writer.flush()

  def close(self):
    if self._writer is not None:
      self._writer.close()
    if self._jsonl is not None:
      self._jsonl.close()


def drop_metrics_after(workdir: str | pathlib.Path, step: int) -> int:
  """Removes the records of steps after ``step`` from ``metrics.jsonl`` (a resumed run trains
  them again); the file is replaced atomically. Returns how many were dropped."""
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.is_file():
    return 0
  lines = [l for l in path.read_text().splitlines() if l.strip()]
  kept = [l for l in lines if json.loads(l).get('step', 0) <= step]
  if len(kept) != len(lines):
    temporary = path.with_name(path.name + '.tmp')
    temporary.write_text(''.join(l + '\n' for l in kept))
    os.replace(temporary, path)
  return len(lines) - len(kept)


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def progress_bar(total: int, initial: int, enabled: bool):
  """A tqdm bar over steps (ETA from the step rate); silent on processes other than 0."""
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, disable=not enabled, unit='step', dynamic_ncols=True,
              file=sys.stderr, mininterval=1.0, smoothing=0.1)
