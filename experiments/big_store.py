#!/usr/bin/env python3
"""Training from a prepared store larger than memory: peak resident memory and time to the
first step.

    python experiments/big_store.py --workdir /tmp/big_store --gigabytes 20

Writes a store of synthetic 480x480 sub-images (``--gigabytes`` of decoded pixels, in the
layout ``flax_sr.prepare`` writes; photos are not needed to measure reading), then trains
EDSR-baseline x4 on it with ``--data_workers 2`` for ``--steps`` steps, sampling the resident
memory (RSS) of the training process and its worker processes every 0.2 s. Prints a table and
writes ``results.json``: the peak RSS of the training process, of all processes together, the
seconds from the trainer's start to its first batch (its log line), and from launch to the
first finished step (XLA compiling the step included). The store is kept for reruns (delete the
workdir to free the disk).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flax_sr import subimage_store  # noqa: E402


def write_synthetic_store(directory: pathlib.Path, gigabytes: float, size: int = 480,
                          per_shard: int = 2000) -> dict:
  """A store of ``gigabytes`` of decoded uint8 sub-images, each a noisy colour field."""
  from array_record.python import array_record_module
  if (directory / subimage_store.MANIFEST).exists():
    return subimage_store.SubimageStore(directory).manifest
  directory.mkdir(parents=True, exist_ok=True)
  count = int(gigabytes * 1e9 // (size * size * 3))
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:size, 0:size].astype(np.float32)
  bases = [np.clip(128 + 90 * np.stack([np.sin(x / (30 + 7 * k) + y / (50 + 3 * k) + c)
                                        for c in range(3)], -1), 0, 255).astype(np.uint8)
           for k in range(16)]
  shards = []
  started = time.perf_counter()
  for first in range(0, count, per_shard):
    name = f'subimages-{first // per_shard:05d}.array_record'
    writer = array_record_module.ArrayRecordWriter(str(directory / name),
                                                  subimage_store.writer_options('none'))
    records = min(per_shard, count - first)
    for i in range(records):
      image = bases[(first + i) % 16] ^ rng.integers(0, 8, (size, size, 3), dtype=np.uint8)
      for record in subimage_store.encode_bands(image, subimage_store.BAND_ROWS):
        writer.write(record)
    writer.close()
    shards.append({'file': name, 'subimages': records, 'sha256': subimage_store.sha256(
        directory / name), 'images': [], 'skipped': [], 'sizes': [[size, size]] * records})
    print(f'\rwriting the store: {first + records}/{count} sub-images '
          f'({time.perf_counter() - started:.0f} s)', end='', flush=True)
  print()
  manifest = {'format': subimage_store.FORMAT, 'band_rows': subimage_store.BAND_ROWS,
              'crop_size': size, 'step': size,
              'thresh_size': 0, 'compression': 'none', 'images_per_shard': per_shard,
              'source': 'synthetic', 'num_source_images': 0, 'num_subimages': count,
              'num_images': 0, 'skipped': [], 'shards': shards}
  subimage_store.write_json(directory / subimage_store.MANIFEST, manifest)
  return manifest


def rss_bytes(pid: int) -> int:
  try:
    with open(f'/proc/{pid}/status') as status:
      for line in status:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def descendants(pid: int) -> list[int]:
  children = []
  try:
    for child in pathlib.Path(f'/proc/{pid}/task/{pid}/children').read_text().split():
      children += [int(child)] + descendants(int(child))
  except OSError:
    pass
  return children


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='/tmp/big_store')
  parser.add_argument('--gigabytes', type=float, default=20.0)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--data_workers', type=int, default=2)
  parser.add_argument('--eval_data_dir', default=str(REPO.parent / 'shared' / 'data' / 'sr' /
                                                     'Set5'))
  args = parser.parse_args()
  work = pathlib.Path(args.workdir).absolute()
  manifest = write_synthetic_store(work / 'store', args.gigabytes)
  decoded = manifest['num_subimages'] * 480 * 480 * 3
  run_dir = work / 'run'
  subprocess.run(['rm', '-rf', str(run_dir)], check=True)
  command = [sys.executable, '-m', 'flax_sr.main', '--dataset', 'prepared', '--data_dir',
             str(work / 'store'), '--eval_data_dir', args.eval_data_dir, '--model', 'edsr',
             '--num_res_blocks', '4', '--features', '32', '--hr_size', '192', '--input_size',
             '48', '--batch_size', '16', '--patches_per_image', '1', '--augment',
             '--data_workers', str(args.data_workers), '--num_train_steps', str(args.steps),
             '--eval_every', str(10 * args.steps), '--eval_examples', '1', '--log_every', '1',
             '--num_grid_images', '1', '--workdir', str(run_dir)]
  started = time.perf_counter()
  process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  peak_main = peak_all = 0
  first_step_s = None
  metrics = run_dir / 'metrics.jsonl'
  while process.poll() is None:
    pids = [process.pid] + descendants(process.pid)
    sizes = [rss_bytes(pid) for pid in pids]
    # The training process is the deepest python (flax_sr re-executes itself once for its
    # malloc settings): count the largest single process as "main".
    peak_main, peak_all = max(peak_main, max(sizes)), max(peak_all, sum(sizes))
    if first_step_s is None and metrics.exists() and 'train/loss' in metrics.read_text():
      first_step_s = time.perf_counter() - started
    time.sleep(0.2)
  output = process.stdout.read()
  first_batch = re.search(r'Data: first batch ready ([0-9.]+) s', output)
  if process.returncode:
    print(output[-3000:])
    return 1
  wall = time.perf_counter() - started
  result = {'store_decoded_gb': decoded / 1e9, 'store_files_gb': sum(
      (work / 'store' / s['file']).stat().st_size for s in manifest['shards']) / 1e9,
      'subimages': manifest['num_subimages'], 'data_workers': args.data_workers,
      'steps': args.steps,
      'first_batch_s': float(first_batch.group(1)) if first_batch else None,
      'peak_rss_largest_process_gib': peak_main / 2**30,
      'peak_rss_all_processes_gib': peak_all / 2**30, 'first_step_s': first_step_s,
      'wall_s': wall, 'machine_memory_gib': os.sysconf('SC_PHYS_PAGES') *
      os.sysconf('SC_PAGE_SIZE') / 2**30}
  for key, value in result.items():
    print(f'{key:<32} {value:.2f}' if isinstance(value, float) else f'{key:<32} {value}')
  (work / 'results.json').write_text(json.dumps(result, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
