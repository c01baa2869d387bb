"""The SR paper table in one command: ``python -m flax_sr.benchmark``.

    python -m flax_sr.benchmark --pretrained x3 --sets ../shared/data/sr/Set5
    python -m flax_sr.benchmark --workdir runs/t91_x3 --benchmark_dir ~/data/benchmark
    python -m flax_sr.benchmark --scale 4 --benchmark_dir ~/data/benchmark   # baselines only

For each set (``--sets DIR ...``, or the standard sets found below ``--benchmark_dir``: Set5,
Set14, B100/BSD100, Urban100, Manga109) every HR image is cropped to a multiple of the scale,
downscaled with MATLAB's bicubic (``imresize(hr, 1/s)``), super-resolved, rounded to 8 bits as
a saved PNG is, and scored as the literature scores it: PSNR/SSIM on the Y channel of BT.601
(a one-channel file is its own Y), ``s`` pixels shaved from each border; RGB too. Beside the
sets: parameters, multi-adds for a 1280x720 output (``flax_sr.complexity``) and milliseconds
per image on the device it ran on.

Written to ``--output_dir``: ``benchmark.md``, ``.csv``, ``.tex`` (booktabs), ``.json`` and
``benchmark_per_image.csv`` (every image's numbers for every row). A set folder that holds an
``HR`` (EDSR's layout) or ``GTmod12`` (BasicSR's) subfolder is read from there.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import pathlib
import sys
import time
from typing import Any, NamedTuple, Sequence

import numpy as np

from flax_sr import cli
from flax_sr import input_pipeline
from flax_sr.config import UserError

# The standard benchmark sets in table order, with the folder names they go by.
STANDARD_SETS = (('Set5', ('set5',)), ('Set14', ('set14',)), ('B100', ('b100', 'bsd100')),
                 ('Urban100', ('urban100',)), ('Manga109', ('manga109',)))
HR_SUBFOLDERS = ('HR', 'GTmod12', 'GT')
BASELINES = ('bicubic', 'nearest')
METRICS = ('psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb')
OUTPUT_FILES = ('benchmark.md', 'benchmark.csv', 'benchmark.tex', 'benchmark.json',
                'benchmark_per_image.csv')
SSIM_WINDOW = 11
TIMING_NOTE = ('model forward pass per image (LR in, SR out on the host), after a first run '
               'of the same shape that compiles; compile time excluded')


class BenchmarkSet(NamedTuple):
  name: str
  folder: pathlib.Path
  images: list[np.ndarray]   # HR, uint8 RGB, cropped to a multiple of the scale
  names: list[str]
  gray: list[bool]           # one-channel files
  skipped: list[str]         # unreadable, or too small for the protocol (named in the footnote)


# ----------------------------------------------------------------------------------------------
# Finding and loading the sets.


def hr_folder(folder: pathlib.Path) -> pathlib.Path:
  """The folder of HR images inside a set folder (its ``HR``/``GTmod12``/``GT`` subfolder)."""
  for sub in HR_SUBFOLDERS:
    if (folder / sub).is_dir():
      return folder / sub
  return folder


def find_standard_sets(root: pathlib.Path) -> tuple[list[tuple[str, pathlib.Path]], list[str]]:
  """The standard sets below ``root`` (at any depth, names matched case-insensitively) in
  table order, and the names of those not found."""
  if not root.is_dir():
    raise UserError(f'--benchmark_dir {root} does not exist or is not a folder')
  folders = {}
  for path in sorted(p for p in root.rglob('*') if p.is_dir()):
    folders.setdefault(path.name.lower(), path)
  if root.name.lower() not in folders:
    folders[root.name.lower()] = root
  found, missing = [], []
  for name, aliases in STANDARD_SETS:
    path = next((folders[a] for a in aliases if a in folders), None)
    if path is None:
      missing.append(name)
    else:
      found.append((name, path))
  return found, missing


def load_set(name: str, folder: pathlib.Path, scale: int) -> BenchmarkSet:
  """A set's HR images cropped to a multiple of ``scale``; unreadable files and images too
  small to score (under 11x11 after the shave, SSIM's window) are skipped by name. An image
  smaller than the scale itself is an error: it cannot be downscaled at all."""
  source = hr_folder(folder)
  loaded = input_pipeline.load_folder_images(source)
  images, names, gray, skipped = [], [], [], list(loaded.skipped)
  for image, image_name, is_gray in zip(loaded.images, loaded.names, loaded.gray):
    height, width = image.shape[:2]
    if min(height, width) < scale:
      raise UserError(f'{source / image_name} is {width}x{height}, smaller than the scale '
                      f'{scale}; remove it from the set')
    cropped = image[:height - height % scale, :width - width % scale]
    if min(cropped.shape[:2]) - 2 * scale < SSIM_WINDOW:
      logging.warning('skipping %s: %dx%d is too small to score at x%d', source / image_name,
                      width, height, scale)
      skipped.append(image_name)
      continue
    images.append(cropped)
    names.append(image_name)
    gray.append(is_gray)
  if not images:
    raise UserError(f'set {name} ({source}) has no image that can be scored at x{scale}')
  return BenchmarkSet(name, source, images, names, gray, skipped)


# ----------------------------------------------------------------------------------------------
# Scoring.


class Scorer:
  """Protocol numbers of several same-size outputs against one HR image (each row scored
  exactly as ``metrics.sr_metrics`` scores a batch). Compiled once per image shape or, given
  a ``bucket`` (``shape_buckets``), once per bucket: the image is padded into it, the padding
  edge-filled for the resizes and masked in the scores, so the numbers do not change."""

  def __init__(self, scale: int, lpips_weights=None, degradation=None, degradation_seed=0):
    import jax
    import jax.numpy as jnp
    from flax_sr import degradations, lpips, metrics, resize, shape_buckets, train
    self.scale = scale
    self.metrics = METRICS + ('lpips',) * (lpips_weights is not None)
    self._lpips_weights = lpips_weights
    self._pad_into = shape_buckets.pad_into

    def sizes(size, n):
      return None if size is None else jnp.broadcast_to(jnp.asarray(size), (n, 2))

    def fill(image, size):  # one (H, W, C) image, edge-filled beyond its real ``size``
      return image if size is None else shape_buckets.edge_fill(image[None], sizes(size, 1))[0]
    self._lpips = jax.jit(lambda weights, rows, hr, size: lpips.lpips_distance(
        weights, metrics.to_float(rows), jnp.broadcast_to(metrics.to_float(hr), rows.shape),
        valid_hw=sizes(size, len(rows))))
    self._score = jax.jit(lambda rows, hr, gray, size: metrics.sr_metrics(
        metrics.to_float(rows), jnp.broadcast_to(metrics.to_float(hr), rows.shape), scale, gray,
        sizes(size, len(rows))))
    self._seed = degradation_seed
    self._realistic = degradation is not None
    if degradation is None:
      self._degrade = jax.jit(lambda hr, size, seed, index: train.degrade(fill(hr, size), scale))
    else:  # image i of a set: realesrgan with fold_in(key(seed), i), as evaluate does; its
      # random noise depends on the image's shape, so it runs at the image's own shape
      self._degrade = jax.jit(lambda hr, size, seed, index: degradations.evaluation_lr(
          hr, scale, degradation, seed, index))
    self._bicubic = jax.jit(lambda lr, size: resize.imresize(fill(lr, size), scale))
    self._nearest = jax.jit(lambda lr, size: train.nearest_upscale(lr[None], scale)[0])

  def _padded(self, image: np.ndarray, bucket, factor: int = 1):
    """``image`` in its bucket (HR shape, divided by ``factor`` for LR), and its size."""
    if bucket is None:
      return image, None
    return (self._pad_into(image, (bucket[0] // factor, bucket[1] // factor)),
            np.array(image.shape[:2], np.int32))

  def degrade(self, hr: np.ndarray, index: int = 0, bucket=None) -> np.ndarray:
    """The LR input of image ``index`` of its set."""
    h, w = hr.shape[0] // self.scale, hr.shape[1] // self.scale
    if self._realistic:
      bucket = None
    return np.asarray(self._degrade(*self._padded(hr, bucket), self._seed, index))[:h, :w]

  def baseline(self, name: str, lr: np.ndarray, bucket=None) -> np.ndarray:
    h, w = lr.shape[0] * self.scale, lr.shape[1] * self.scale
    function = self._bicubic if name == 'bicubic' else self._nearest
    return np.asarray(function(*self._padded(lr, bucket, self.scale)))[:h, :w]

  def __call__(self, rows: dict[str, np.ndarray], hr: np.ndarray, gray: bool, bucket=None
               ) -> dict[str, dict[str, float]]:
    names = list(rows)
    hr, size = self._padded(hr, bucket)
    stacked = np.stack([self._padded(rows[n], bucket)[0] for n in names])
    scores = dict(self._score(stacked, hr, np.full(len(names), gray), size))
    if self._lpips_weights is not None:
      scores['lpips'] = self._lpips(self._lpips_weights, stacked, hr, size)
    return {n: {m: float(scores[m][i]) for m in self.metrics} for i, n in enumerate(names)}


def run_benchmark(sets: Sequence[BenchmarkSet], scale: int, upscaler=None,
                  baselines: Sequence[str] = BASELINES, timing_runs: int = 1,
                  progress: bool = True, lpips_weights=None, degradation=None,
                  degradation_seed: int = 0, max_buckets: int = 0
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Scores every image of every set: ({set: {row: {metric: mean}}}, {set: ms per image}),
  and one record per image. ``upscaler`` (an ``inference.Upscaler``, or None for baselines
  only) maps an LR uint8 image to a float SR image in [0, 1]. ``lpips_weights`` add LPIPS
  (RGB, whole image) to every row's metrics. ``degradation`` (Real-ESRGAN settings) replaces
  the bicubic LR by ``degradations.evaluation_lr`` of each image with ``degradation_seed``.
  ``max_buckets`` > 0 pads each set's images into at most that many shapes
  (``shape_buckets``; the model too where ``upscaler.supports_buckets``): a handful of
  compilations per set instead of one per image shape, with the same scores."""
  from tqdm.auto import tqdm
  from flax_sr import pictures, shape_buckets
  scorer = Scorer(scale, lpips_weights, degradation, degradation_seed)
  per_image: list[dict[str, Any]] = []
  bar = tqdm(total=sum(len(s.images) for s in sets), unit='image', disable=not progress,
             file=sys.stderr, dynamic_ncols=True)
  for bench_set in sets:
    bar.set_description(bench_set.name)
    plan = (shape_buckets.plan_buckets([hr.shape[:2] for hr in bench_set.images], max_buckets)
            if max_buckets else [None] * len(bench_set.images))
    for index, (hr, name, gray, bucket) in enumerate(zip(bench_set.images, bench_set.names,
                                                         bench_set.gray, plan)):
      lr = scorer.degrade(hr, index, bucket)
      rows = {b: scorer.baseline(b, lr, bucket) for b in baselines}
      record: dict[str, Any] = {'set': bench_set.name, 'image': name, 'width': hr.shape[1],
                                'height': hr.shape[0], 'gray': gray}
      if upscaler is not None:
        lr_bucket = None if bucket is None else (bucket[0] // scale, bucket[1] // scale)
        output = upscaler(lr, bucket=lr_bucket)  # the first run of a shape compiles
        times = []
        for _ in range(timing_runs):
          start = time.perf_counter()
          output = upscaler(lr, bucket=lr_bucket)
          times.append(time.perf_counter() - start)
        rows['model'] = pictures.to_uint8(output)  # what a saved PNG holds
        record['model_ms'] = 1e3 * min(times) if times else None
      for row, values in scorer(rows, hr, gray, bucket).items():
        record.update({f'{row}_{m}': v for m, v in values.items()})
      per_image.append(record)
      bar.update(1)
  bar.close()
  return summarize(per_image, ['model'] * (upscaler is not None) + list(baselines),
                   scorer.metrics), per_image


def summarize(per_image: Sequence[dict[str, Any]], rows: Sequence[str],
              metrics: Sequence[str] = METRICS) -> dict[str, Any]:
  """Per-set means of every row's metrics, and the mean milliseconds per image."""
  sets: dict[str, Any] = {}
  ms: dict[str, float | None] = {}
  for set_name in dict.fromkeys(r['set'] for r in per_image):
    records = [r for r in per_image if r['set'] == set_name]
    sets[set_name] = {row: {m: float(np.mean([r[f'{row}_{m}'] for r in records]))
                            for m in metrics} for row in rows}
    times = [r['model_ms'] for r in records if r.get('model_ms') is not None]
    ms[set_name] = float(np.mean(times)) if times else None
  return {'sets': sets, 'ms_per_image': ms, 'metrics': list(metrics)}


# ----------------------------------------------------------------------------------------------
# The table in five formats.


def _cell(values: dict[str, float] | None) -> str:
  if values is None:
    return '--'
  lpips = f'/{values["lpips"]:.4f}' if 'lpips' in values else ''
  return f'{values["psnr_y"]:.2f}/{values["ssim_y"]:.4f}{lpips}'


def _count(n: int | None, unit: str) -> str:
  if n is None:
    return '--'
  return f'{n / 1e9:.1f}G' if unit == 'G' else f'{n / 1e3:.0f}K' if n < 1e6 else f'{n / 1e6:.2f}M'


def table_rows(result: dict[str, Any]) -> list[list[str]]:
  """Header and one row per method: method, scale, params, multi-adds, each set's PSNR/SSIM-Y,
  ms per image (mean over all images)."""
  set_names = list(result['sets'])
  header = ['Method', 'Scale', 'Params', 'Multi-Adds (720p)',
            *[f'{s} PSNR/SSIM' + ('/LPIPS' if 'lpips' in result.get('metrics', ()) else '')
              for s in set_names], 'ms/image']
  rows = [header]
  for row in result['rows']:
    is_model = row == 'model'
    label = result['model_label'] if is_model else row.capitalize()
    ms = [v for v in result['ms_per_image'].values() if v is not None]
    rows.append([label, f'x{result["scale"]}',
                 _count(result['params'], 'K') if is_model else '--',
                 _count(result['multi_adds_720p'], 'G') if is_model else '--',
                 *[_cell(result['sets'][s].get(row)) for s in set_names],
                 f'{np.mean(ms):.1f}' if is_model and ms else '--'])
  return rows


def footnotes(result: dict[str, Any]) -> list[str]:
  degradation = result.get('degradation', 'bicubic')
  if isinstance(degradation, dict):
    lr_text = (f'LR by the Real-ESRGAN degradation (image i of a set with fold_in(key('
               f'{degradation["seed"]}), i)'
               + (f'; options {degradation["options"]}' if degradation['options'] else '')
               + ')')
  else:
    lr_text = 'LR by MATLAB bicubic'
  notes = [f'PSNR (dB) / SSIM on Y (BT.601), {result["scale"]} pixels shaved from each border, '
           f'HR cropped to a multiple of the scale, {lr_text}; outputs rounded to 8 bits.']
  if 'lpips' in result.get('metrics', ()):
    notes.append(f'LPIPS v0.1 ({result["lpips_net"]}; lower is better) on RGB of the whole '
                 f'image, inputs scaled to [-1, 1] as the PyTorch lpips package does.')
  elif result.get('lpips_note'):
    notes.append(result['lpips_note'])
  for set_name, info in result['images'].items():
    if info['skipped']:
      notes.append(f'{set_name}: {info["scored"]} images scored, {len(info["skipped"])} skipped '
                   f'({", ".join(info["skipped"][:5])}{", ..." if len(info["skipped"]) > 5 else ""}).')
  if result.get('multi_adds_720p') is not None:
    notes.append(f'Multi-Adds: {result["multi_adds_note"]}')
  if result.get('device'):
    bucketed = (' Images run padded into at most '
                f'{result["shape_buckets"]} shapes per set (--shape_buckets 0: each at its own '
                'shape).' if result.get('model_in_buckets') else '')
    notes.append(f'ms/image: {TIMING_NOTE}; on {result["device"]}.{bucketed}')
  return notes


def format_markdown(result: dict[str, Any]) -> str:
  rows = table_rows(result)
  lines = ['| ' + ' | '.join(rows[0]) + ' |', '|' + '|'.join(' --- ' for _ in rows[0]) + '|']
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows[1:]]
  return '\n'.join(lines + [''] + [f'* {n}' for n in footnotes(result)]) + '\n'


def format_latex(result: dict[str, Any]) -> str:
  rows = table_rows(result)
  escape = lambda text: text.replace('%', r'\%').replace('_', r'\_').replace('&', r'\&')
  body = [' & '.join(escape(c).replace('x', r'$\times$', 1) if i == 1 else escape(c)
                     for i, c in enumerate(r)) + r' \\' for r in rows[1:]]
  return '\n'.join([r'\begin{tabular}{l' + 'c' * (len(rows[0]) - 1) + '}', r'\toprule',
                    ' & '.join(escape(c) for c in rows[0]) + r' \\', r'\midrule', *body,
                    r'\bottomrule', r'\end{tabular}']) + '\n'


def format_csv(result: dict[str, Any]) -> str:
  out = io.StringIO()
  writer = csv.writer(out)
  set_names = list(result['sets'])
  writer.writerow(['method', 'scale', 'params', 'multi_adds_720p', 'ms_per_image',
                   *[f'{s}_{m}' for s in set_names for m in result['metrics']]])
  for row in result['rows']:
    is_model = row == 'model'
    ms = [v for v in result['ms_per_image'].values() if v is not None]
    writer.writerow([result['model_label'] if is_model else row, result['scale'],
                     result['params'] if is_model else '',
                     result['multi_adds_720p'] if is_model else '',
                     f'{np.mean(ms):.3f}' if is_model and ms else '',
                     *[f'{result["sets"][s][row][m]:.6f}' for s in set_names
                       for m in result['metrics']]])
  return out.getvalue()


def format_per_image_csv(per_image: Sequence[dict[str, Any]]) -> str:
  out = io.StringIO()
  fields = list(dict.fromkeys(k for record in per_image for k in record))
  writer = csv.DictWriter(out, fields)
  writer.writeheader()
  for record in per_image:
    writer.writerow({k: (f'{v:.6f}' if isinstance(v, float) else v) for k, v in record.items()})
  return out.getvalue()


def write_atomically(path: pathlib.Path, text: str):
  """Writes ``text`` under a temporary name, then renames: never a half-written file."""
  temporary = path.with_name(f'.{path.name}.partial')
  temporary.write_text(text)
  os.replace(temporary, path)


def write_outputs(result: dict[str, Any], per_image, output_dir: pathlib.Path
                  ) -> list[pathlib.Path]:
  output_dir.mkdir(parents=True, exist_ok=True)
  texts = (format_markdown(result), format_csv(result), format_latex(result),
           json.dumps(result, indent=2, allow_nan=False) + '\n', format_per_image_csv(per_image))
  paths = [output_dir / name for name in OUTPUT_FILES]
  for path, text in zip(paths, texts):
    write_atomically(path, text)
  return paths


# ----------------------------------------------------------------------------------------------
# The command.


def parse_baselines(text: str) -> tuple[str, ...]:
  names = tuple(n for n in text.replace(' ', '').split(',') if n and n != 'none')
  unknown = [n for n in names if n not in BASELINES]
  if unknown:
    raise argparse.ArgumentTypeError(f'unknown baseline {unknown[0]!r}; valid: '
                                     f'{", ".join(BASELINES)} (comma-separated), or none')
  return names


def build_parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(
      prog='python -m flax_sr.benchmark',
      description='The SR paper table: PSNR/SSIM-Y on every benchmark set for a model beside '
                  'bicubic, with parameters, multi-adds and milliseconds per image.')
  cli.add_model_source_flags(parser, required=False)
  parser.add_argument('--scale', type=cli.positive_int,
                      help='the scale (needed without a model: baselines only; with a model it '
                           'must be the model\'s)')
  sets = parser.add_mutually_exclusive_group(required=True)
  sets.add_argument('--sets', nargs='+', metavar='DIR', help='set folders of HR images')
  sets.add_argument('--benchmark_dir', metavar='ROOT',
                    help='a folder holding the standard sets (Set5, Set14, B100 or BSD100, '
                         'Urban100, Manga109) at any depth')
  parser.add_argument('--baselines', type=parse_baselines, default=BASELINES,
                      help='comma-separated rows beside the model: bicubic, nearest, or none '
                           '(default: bicubic,nearest)')
  parser.add_argument('--self_ensemble', action='store_true',
                      help='x8 geometric self-ensemble (EDSR+), reported as "model+"')
  parser.add_argument('--output_dir',
                      help='where the five files go (default: WORKDIR/benchmark for a run, '
                           'else ./benchmark_<model>_x<scale>)')
  parser.add_argument('--overwrite', action='store_true', help='replace existing output files')
  parser.add_argument('--tile', type=cli.positive_int, default=512,
                      help='LR images larger than this many pixels on a side go through the '
                           'model in overlapping tiles (default 512; bounds memory)')
  parser.add_argument('--tile_overlap', type=cli.non_negative_int, default=32,
                      help='LR pixels of context around each tile (default 32)')
  parser.add_argument('--timing_runs', type=cli.non_negative_int, default=1,
                      help='timed runs per image after the compiling one (default 1; 0: no '
                           'timing, each image runs once)')
  cli.add_shape_buckets_flag(parser)
  parser.add_argument('--num_devices', type=cli.positive_int, help='use the first N devices')
  parser.add_argument('--no_progress', action='store_true', help='no progress bar')
  cli.add_degradation_flags(parser)
  parser.add_argument('--lpips', choices=('alex', 'vgg', 'none'), default='alex',
                      help='LPIPS network of the LPIPS numbers (default: alex; none leaves them '
                           'out); needs the [perceptual] extra')
  return parser


def default_output_dir(args) -> pathlib.Path:
  if args.workdir:
    return pathlib.Path(args.workdir) / 'benchmark'
  if args.checkpoint:
    return pathlib.Path(args.checkpoint).parent.parent / 'benchmark'
  name = (f'pretrained_{args.pretrained}' if args.pretrained else
          f'weights_{pathlib.Path(args.weights).stem}' if args.weights else f'bicubic_x{args.scale}')
  return pathlib.Path(f'benchmark_{name}')


def check_output_dir(output_dir: pathlib.Path, overwrite: bool):
  if output_dir.exists() and not output_dir.is_dir():
    raise UserError(f'--output_dir {output_dir} is a file, not a folder')
  existing = [name for name in OUTPUT_FILES if (output_dir / name).exists()]
  if existing and not overwrite:
    raise UserError(f'{output_dir / existing[0]} exists (and {len(existing) - 1} more of the '
                    f'outputs); pass --overwrite to replace them, or another --output_dir')


def resolve_sets(args) -> list[tuple[str, pathlib.Path]]:
  if args.sets:
    resolved = []
    for folder in map(pathlib.Path, args.sets):
      if not folder.is_dir():
        raise UserError(f'--sets {folder} does not exist or is not a folder')
      resolved.append((folder.name, folder))
    names = [n for n, _ in resolved]
    if len(set(names)) != len(names):
      raise UserError(f'two --sets folders share a name ({", ".join(names)}); their rows would '
                      f'collide')
    return resolved
  found, missing = find_standard_sets(pathlib.Path(args.benchmark_dir))
  if not found:
    raise UserError(f'no standard set (Set5, Set14, B100/BSD100, Urban100, Manga109) below '
                    f'--benchmark_dir {args.benchmark_dir}')
  if missing:
    print(f'not found below {args.benchmark_dir}: {", ".join(missing)}')
  return found


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  degradation = cli.degradation_from_flags(args)
  has_model = args.workdir or args.checkpoint or args.pretrained or args.weights
  if not has_model and args.scale is None:
    raise UserError('name a model (--workdir, --checkpoint, --pretrained or --weights), or '
                    '--scale S for the baselines alone')
  if not has_model and not args.baselines:
    raise UserError('without a model, --baselines must name at least one of bicubic, nearest')
  if 2 * args.tile_overlap >= args.tile:
    raise UserError(f'--tile {args.tile} must be larger than twice --tile_overlap '
                    f'{args.tile_overlap}')
  set_folders = resolve_sets(args)
  output_dir = pathlib.Path(args.output_dir) if args.output_dir else default_output_dir(args)
  check_output_dir(output_dir, args.overwrite)

  loaded = cli.load_model_from_flags(args)
  scale = args.scale
  if loaded is not None:
    if scale is not None and scale != loaded.model.scale:
      raise UserError(f'{loaded.source} is a x{loaded.model.scale} model; --scale {scale} asks '
                      f'for x{scale}')
    scale = loaded.model.scale
  sets = [load_set(name, folder, scale) for name, folder in set_folders]

  import jax
  from flax_sr import complexity, inference, parallel
  upscaler = None
  result: dict[str, Any] = {'scale': scale, 'params': None, 'multi_adds_720p': None}
  if loaded is not None:
    mesh = parallel.make_mesh(args.num_devices)
    upscaler = inference.Upscaler(loaded, tile=args.tile, tile_overlap=args.tile_overlap,
                                  mesh=mesh, self_ensemble=args.self_ensemble)
    lr_hw = complexity.lr_size_for_output(scale)
    multi_adds = complexity.count_multiply_adds(loaded.model, loaded.variables, lr_hw)
    device = jax.devices()[0]
    result.update(
        params=complexity.count_parameters(loaded.variables['params']),
        multi_adds_720p=multi_adds * (8 if args.self_ensemble else 1),
        multi_adds_note=(f'one forward pass at {lr_hw[1]}x{lr_hw[0]} LR (output 1280x720 '
                         f'rounded to whole LR pixels), convolutions and learned matrix '
                         f'products, counted as direct convolutions'
                         + ('; x8 for the self-ensemble' if args.self_ensemble else '') + '.'),
        device=(f'{mesh.size} x {device.device_kind}' + (f' ({os.cpu_count()} cores)'
                                                        if device.platform == 'cpu' else '')))
  from flax_sr import lpips
  lpips_weights = None if args.lpips == 'none' else lpips.installed_weights(args.lpips)
  result.update(lpips_net=args.lpips if lpips_weights is not None else None,
                lpips_note=lpips.MISSING_NOTE if args.lpips != 'none' and lpips_weights is None
                else None)
  if result['lpips_note']:
    print(result['lpips_note'], file=sys.stderr)
  summary, per_image = run_benchmark(sets, scale, upscaler, args.baselines,
                                     args.timing_runs if upscaler is not None else 0,
                                     progress=not args.no_progress, lpips_weights=lpips_weights,
                                     degradation=degradation,
                                     degradation_seed=args.degradation_seed,
                                     max_buckets=args.shape_buckets)
  label = (f'{loaded.config.model} ({loaded.source})' if loaded is not None else None)
  result.update(
      model_label=(label + '+' if args.self_ensemble else label) if label else None,
      model=(loaded.config.model if loaded is not None else None),
      source=(loaded.source if loaded is not None else None),
      self_ensemble=args.self_ensemble,
      shape_buckets=args.shape_buckets,
      model_in_buckets=bool(upscaler is not None and args.shape_buckets
                            and upscaler.supports_buckets),
      degradation=({'kind': args.degradation, 'seed': args.degradation_seed,
                    'options': args.degradation_options} if degradation else 'bicubic'),
      rows=['model'] * (loaded is not None) + list(args.baselines),
      images={s.name: {'folder': str(s.folder), 'scored': len(s.images), 'skipped': s.skipped}
              for s in sets},
      **summary)
  if args.timing_runs == 0 or loaded is None:
    result['ms_per_image'] = {name: None for name in result['sets']}
  print(format_markdown(result))
  for path in write_outputs(result, per_image, output_dir):
    print(f'wrote {path}')
  return 0


def console() -> None:
  cli.console_main(main)


if __name__ == '__main__':
  console()
