"""Prepare a store of HR sub-images for streaming training: ``python -m flax_sr.prepare``.

    python -m flax_sr.prepare DIV2K_train_HR/ data/div2k_sub/            # 480x480, step 240
    python -m flax_sr.prepare DF2K/ data/df2k_sub/ --crop_size 400 --step 200
    python -m flax_sr.main --dataset prepared --data_dir data/div2k_sub/ --eval_data_dir Set5/ ...

Cuts every image under IMAGE_DIR into overlapping sub-images as BasicSR's
``extract_subimages.py`` does and writes them as ArrayRecord shards plus a manifest with counts
and SHA-256 checksums (see ``flax_sr/subimage_store.py``). Interrupted, it continues where it
stopped when run again with the same arguments; a finished store is left as it is.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from flax_sr import cli
from flax_sr.config import UserError


def parse_args(argv=None) -> argparse.Namespace:
  parser = cli.ArgumentParser(
      prog='python -m flax_sr.prepare',
      description='Cut the HR images of a folder into sub-images and write a store that '
                  '--dataset prepared streams from.')
  parser.add_argument('image_dir', help='folder of HR images (PNG/JPEG/BMP, searched recursively)')
  parser.add_argument('out_dir', help='the store to write (created; resumed if interrupted)')
  parser.add_argument('--crop_size', type=cli.positive_int, default=480,
                      help='sub-image side (default 480, as BasicSR for DIV2K)')
  parser.add_argument('--step', type=cli.positive_int, default=240,
                      help='distance between sub-images (default 240: they overlap by half)')
  parser.add_argument('--thresh_size', type=cli.non_negative_int, default=0,
                      help='add a sub-image flush with the far edge when more than this many '
                           'pixels would be left over (default 0: always)')
  parser.add_argument('--compression', choices=('none', 'zstd'), default='none',
                      help='per-record compression: none (default; reads about twice as fast, '
                           'experiments/RESULTS.md) or zstd (smaller on disk)')
  parser.add_argument('--images_per_shard', type=cli.positive_int, default=50,
                      help='source images per shard file (the unit of resuming; default 50)')
  args = parser.parse_args(argv)
  if args.step > args.crop_size:
    raise UserError(f'--step {args.step} is larger than --crop_size {args.crop_size}: parts of '
                    f'every image would be left out')
  return args


def prepare(image_dir, out_dir, crop_size: int = 480, step: int = 240, thresh_size: int = 0,
            compression: str = 'none', images_per_shard: int = 50, progress: bool = True
            ) -> dict:
  """Writes the store (see the module docstring) and returns its manifest."""
  from array_record.python import array_record_module
  from tqdm.auto import tqdm
  from flax_sr import input_pipeline
  from flax_sr import subimage_store as store

  out = pathlib.Path(out_dir).expanduser().absolute()
  paths = input_pipeline.list_images(image_dir)
  if not paths:
    raise UserError(f'no PNG/JPEG/BMP image under {image_dir}')
  root = pathlib.Path(image_dir)
  names = [str(p.relative_to(root)) for p in paths]
  settings = {'format': store.FORMAT, 'band_rows': store.BAND_ROWS, 'crop_size': crop_size,
              'step': step,
              'thresh_size': thresh_size, 'compression': compression,
              'images_per_shard': images_per_shard, 'source': str(root.absolute()),
              'num_source_images': len(paths)}
  if (out / store.MANIFEST).exists():
    manifest = store.SubimageStore(out).manifest
    if {k: manifest.get(k) for k in settings} != settings:
      raise UserError(f'{out} already holds a store prepared differently; choose another '
                      f'OUT_DIR or delete it')
    print(f'{out} is already prepared: {manifest["num_subimages"]} sub-images of '
          f'{manifest["num_source_images"]} images')
    return manifest
  progress_path = out / store.PROGRESS
  done: list[dict] = []
  if progress_path.exists():
    import json
    saved = json.loads(progress_path.read_text())
    if saved.get('settings') != settings:
      raise UserError(f'{out} holds an unfinished store prepared with other settings or from '
                      f'other images; rerun with the same arguments, or delete it')
    # A shard is kept only if its file is whole (the checksum it was recorded with).
    for shard in saved['shards']:
      if (out / shard['file']).is_file() and store.sha256(out / shard['file']) == shard['sha256']:
        done.append(shard)
      else:
        break
  out.mkdir(parents=True, exist_ok=True)
  bar = tqdm(total=len(paths), initial=len(done) * images_per_shard if done else 0,
             unit='image', desc='preparing', disable=not progress)
  for first in range(len(done) * images_per_shard, len(paths), images_per_shard):
    shard_names = names[first:first + images_per_shard]
    file_name = f'subimages-{first // images_per_shard:05d}.array_record'
    temporary = out / f'.{file_name}.partial'
    writer = array_record_module.ArrayRecordWriter(str(temporary),
                                                  store.writer_options(compression))
    sizes, used, skipped = [], [], []
    for path, name in zip(paths[first:first + images_per_shard], shard_names):
      try:
        image = input_pipeline.read_image(path)
      except Exception as error:  # Pillow raises many types for broken files
        print(f'skipping unreadable image {path} ({type(error).__name__})', file=sys.stderr)
        skipped.append(name)
        bar.update(1)
        continue
      for sub in store.cut_subimages(image, crop_size, step, thresh_size):
        for record in store.encode_bands(sub, store.BAND_ROWS):
          writer.write(record)
        sizes.append(sub.shape[:2])
      used.append(name)
      bar.update(1)
    writer.close()
    os.replace(temporary, out / file_name)
    done.append({'file': file_name, 'subimages': len(sizes), 'sha256': store.sha256(out / file_name),
                 'images': used, 'skipped': skipped, 'sizes': [list(map(int, s)) for s in sizes]})
    store.write_json(progress_path, {'settings': settings, 'shards': done})
  bar.close()
  manifest = dict(settings, num_subimages=sum(s['subimages'] for s in done),
                  num_images=sum(len(s['images']) for s in done),
                  skipped=[name for s in done for name in s['skipped']], shards=done)
  store.write_json(out / store.MANIFEST, manifest)
  progress_path.unlink(missing_ok=True)
  return manifest


def main(argv=None) -> int:
  args = parse_args(argv)
  manifest = prepare(args.image_dir, args.out_dir, args.crop_size, args.step, args.thresh_size,
                     args.compression, args.images_per_shard)
  size = sum(os.path.getsize(pathlib.Path(args.out_dir) / s['file']) for s in manifest['shards'])
  print(f'{args.out_dir}: {manifest["num_subimages"]} sub-images of up to {args.crop_size}x'
        f'{args.crop_size} from {manifest["num_images"]} images in {len(manifest["shards"])} '
        f'shard(s), {size / 2**20:.1f} MiB' + (f'; skipped {len(manifest["skipped"])} unreadable'
                                                if manifest['skipped'] else ''))
  return 0


def console() -> None:
  cli.console_main(main)


if __name__ == '__main__':
  console()
