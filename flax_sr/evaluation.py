"""The evaluation loop shared by training and the ``evaluate`` tool: mean protocol metrics of a
model over an evaluation set, on every device, and the table that reports them."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import jax
import numpy as np

from flax_sr import input_pipeline
from flax_sr import parallel
from flax_sr import shape_buckets
from flax_sr import train as train_lib

ROWS = ('model', 'bicubic', 'nearest')


def evaluate_images(eval_fn: Callable, variables, eval_set: input_pipeline.EvalSet, mesh,
                    batch_size: int, max_buckets: int = 0) -> dict[str, dict[str, float]]:
  """Mean metrics over every image of ``eval_set``: {row: {metric: value}}.

  ``eval_fn(variables, batch) -> sums`` is a compiled ``train.eval_sums`` (or ``eval_step`` with
  a state as ``variables``). Same-size images go in padded, masked batches split over the
  devices. Whole images of different sizes go one per device, either each at its own shape
  (one compilation per shape) or, with ``max_buckets`` > 0, padded into at most that many
  shapes with the same scores (``shape_buckets``; the caller checks that the model allows it
  with ``shape_buckets.supports_model``). In a multi-host run each process feeds its own part
  of every batch.
  """
  sums = None
  lr_images = eval_set.lr_images
  if eval_set.same_size:
    batch_size = -(-batch_size // mesh.size) * mesh.size
    batches = input_pipeline.eval_batches(eval_set.images, batch_size, mesh.size, lr_images)
    global_batch = batch_size
  elif max_buckets:
    batches = bucketed_batches(eval_set, mesh.size, max_buckets)
    global_batch = mesh.size
  else:
    batches = (dict(next(input_pipeline.eval_batches(
                        image[None], 1, mesh.size, None if lr_images is None else
                        lr_images[i][None])), gray=np.full(mesh.size, gray))
               for i, (image, gray) in enumerate(zip(eval_set.images, eval_set.gray)))
    global_batch = mesh.size
  local = input_pipeline.local_batch_slice(global_batch, jax.process_index(), jax.process_count())
  for batch in batches:
    batch = {k: v[local] for k, v in batch.items()}
    sums = train_lib.sum_eval(sums, eval_fn(variables, parallel.put_batch(batch, mesh)))
  return train_lib.summarize_eval(sums)


def bucketed_batches(eval_set: input_pipeline.EvalSet, batch_size: int, max_buckets: int
                     ) -> Iterator[dict[str, np.ndarray]]:
  """Batches of ``batch_size`` images of ``eval_set`` (whole images of any size), each image
  padded into its bucket of ``shape_buckets.plan_buckets`` with its real size in ``hr_size``;
  a bucket's last batch is completed with masked copies. Every image exactly once."""
  images, lr_images = eval_set.images, eval_set.lr_images
  plan = shape_buckets.plan_buckets([image.shape[:2] for image in images], max_buckets)
  for bucket in dict.fromkeys(plan):  # in order of first appearance
    members = [i for i, b in enumerate(plan) if b == bucket]
    for start in range(0, len(members), batch_size):
      chunk = members[start:start + batch_size]
      chunk = chunk + [chunk[-1]] * (batch_size - len(chunk))
      batch = {'hr': np.stack([shape_buckets.pad_into(images[i], bucket) for i in chunk]),
               'hr_size': np.array([images[i].shape[:2] for i in chunk], np.int32),
               'gray': np.array([eval_set.gray[i] for i in chunk]),
               'mask': np.arange(batch_size) < len(members) - start}
      if lr_images is not None:
        scale = images[chunk[0]].shape[0] // lr_images[chunk[0]].shape[0]
        batch['lr'] = np.stack([shape_buckets.pad_into(lr_images[i], (bucket[0] // scale,
                                                                      bucket[1] // scale))
                                for i in chunk])
      yield batch


def degraded_eval_set(eval_set: input_pipeline.EvalSet, scale: int, settings, seed: int,
                      progress: bool = True) -> input_pipeline.EvalSet:
  """``eval_set`` with realistic LR inputs: image i degraded once by
  ``degradations.evaluation_lr`` with ``seed`` (one compilation per image shape)."""
  from tqdm.auto import tqdm
  from flax_sr import degradations
  degrade = jax.jit(degradations.evaluation_lr, static_argnums=(1, 2))
  images = list(eval_set.images)
  lr = [np.asarray(degrade(image, scale, settings, seed, i))
        for i, image in enumerate(tqdm(images, desc='degrading', unit='image',
                                       disable=not progress or len(images) < 2))]
  lr_images = np.stack(lr) if eval_set.same_size else lr
  return input_pipeline.EvalSet(eval_set.images, eval_set.names,
                                f'{eval_set.name}, realesrgan-degraded (seed {seed})',
                                eval_set.gray, lr_images)


def format_table(table: dict[str, dict[str, float]], scale: int, dataset: str,
                 num_images: int, title: str = '', model_label: str = 'model') -> str:
  """The evaluation table: one row per method, PSNR/SSIM on Y and RGB, gain over bicubic.
  ``model_label`` names the model row (e.g. 'model+' for the self-ensemble)."""
  has_lpips = 'lpips' in table.get('model', {})
  lines = [f'{title}Evaluation on {dataset} ({num_images} images, x{scale}, shave {scale}'
           f'{"; LPIPS on RGB, whole image" if has_lpips else ""}):',
           f'{"method":<10} {"PSNR-Y":>8} {"SSIM-Y":>8} {"PSNR-RGB":>9} {"SSIM-RGB":>9}'
           + (f' {"LPIPS":>7}' if has_lpips else '')]
  for row in ROWS:
    if row in table:
      v = table[row]
      label = model_label if row == 'model' else row
      lines.append(f'{label:<10} {v["psnr_y"]:8.3f} {v["ssim_y"]:8.4f} {v["psnr_rgb"]:9.3f} '
                   f'{v["ssim_rgb"]:9.4f}' + (f' {v["lpips"]:7.4f}' if has_lpips else ''))
  if 'bicubic' in table:
    gain_psnr = table['model']['psnr_y'] - table['bicubic']['psnr_y']
    gain_ssim = table['model']['ssim_y'] - table['bicubic']['ssim_y']
    lines.append(f'{model_label} gain over bicubic: {gain_psnr:+.3f} dB PSNR-Y, '
                 f'{gain_ssim:+.4f} SSIM-Y')
  return '\n'.join(lines)


def results_json(table, scale: int, eval_set: input_pipeline.EvalSet, source: str) -> dict:
  keys = ('psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb', 'lpips')
  result: dict[str, Any] = {row: {k: table[row][k] for k in keys if k in table[row]}
                            for row in ROWS if row in table}
  result.update(scale=scale, num_images=len(eval_set), dataset=eval_set.name, checkpoint=source)
  return result
