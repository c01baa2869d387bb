"""Upscale your own images: ``python -m flax_sr.predict``.

    python -m flax_sr.predict --workdir runs/t91_x3 --input photo.jpg --output photo_x3.png
    python -m flax_sr.predict --pretrained x3 --input photos/ --output upscaled/

Every PNG/JPEG/BMP input (any size; grayscale and RGBA converted to RGB) is enlarged by the
model's scale and written as ``<stem>.png``. Large images go through the network in overlapping
tiles (``--tile``, ``--tile_overlap``) so memory stays bounded; the result equals the untiled
one when the overlap covers the network's receptive field. Unreadable inputs are reported by
name and skipped; existing outputs are kept unless ``--overwrite``.
"""

from __future__ import annotations

import logging
import pathlib
import time

from flax_sr import cli
from flax_sr import input_pipeline
from flax_sr import pictures
from flax_sr.config import UserError


def plan_outputs(input_path: pathlib.Path, output: pathlib.Path
                 ) -> list[tuple[pathlib.Path, pathlib.Path]]:
  """(input file, output file) pairs: a file to a file (or into a folder), a folder to a folder."""
  if input_path.is_dir():
    if output.exists() and not output.is_dir():
      raise UserError(f'--input {input_path} is a folder, so --output must be a folder, '
                      f'but {output} is a file')
    inputs = input_pipeline.list_images(input_path)
    if not inputs:
      raise UserError(f'no PNG/JPEG/BMP images under {input_path}')
    pairs = [(p, output / p.relative_to(input_path).with_suffix('.png')) for p in inputs]
    stems = [o for _, o in pairs]
    if len(set(stems)) != len(stems):
      raise UserError(f'two inputs under {input_path} share a name stem (e.g. a.jpg and a.png); '
                      f'their outputs would collide')
    return pairs
  if not input_path.is_file():
    raise UserError(f'--input {input_path} does not exist')
  if output.is_dir() or str(output).endswith(('/', '\\')):
    return [(input_path, output / f'{input_path.stem}.png')]
  return [(input_path, output)]


def main(argv=None) -> int:
  parser = cli.ArgumentParser(prog='python -m flax_sr.predict',
                                   description='Upscale images with a trained model.')
  cli.add_model_source_flags(parser)
  parser.add_argument('--input', required=True, help='an image file or a folder of images')
  parser.add_argument('--output', required=True, help='output PNG file, or folder')
  parser.add_argument('--tile', type=cli.positive_int, default=256,
                      help='process images larger than this many LR pixels in tiles (default 256)')
  parser.add_argument('--tile_overlap', type=cli.non_negative_int, default=16,
                      help='LR pixels of context around each tile (default 16)')
  parser.add_argument('--batch_size', type=cli.positive_int, default=8,
                      help='tiles per device batch')
  parser.add_argument('--num_devices', type=cli.positive_int,
                      help='use the first N devices (default: all)')
  parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
  parser.add_argument('--self_ensemble', action='store_true',
                      help='x8 geometric self-ensemble (EDSR+): slightly sharper, 8x slower')
  args = parser.parse_args(argv)
  if args.tile < 8 or 2 * args.tile_overlap >= args.tile:
    raise UserError(f'--tile must be at least 8 and larger than twice --tile_overlap; got '
                    f'--tile {args.tile} --tile_overlap {args.tile_overlap}')

  pairs = plan_outputs(pathlib.Path(args.input), pathlib.Path(args.output))
  from flax_sr import inference, parallel
  loaded = cli.load_model_from_flags(args)
  upscaler = inference.Upscaler(loaded, tile=args.tile, tile_overlap=args.tile_overlap,
                                batch_size=args.batch_size, self_ensemble=args.self_ensemble,
                                mesh=parallel.make_mesh(args.num_devices))
  written = skipped = existing = 0
  start, megapixels = time.perf_counter(), 0.0
  for source, target in pairs:
    if target.exists() and not args.overwrite:
      logging.warning('%s exists; not overwritten (use --overwrite)', target)
      existing += 1
      continue
    try:
      image = input_pipeline.read_image(source)
    except Exception as error:  # Pillow raises many types for broken files
      logging.warning('skipping unreadable image %s (%s)', source, type(error).__name__)
      skipped += 1
      continue
    output = upscaler(image)
    pictures.save_png(output, target)
    megapixels += output.shape[0] * output.shape[1] / 1e6
    written += 1
    print(f'{source} ({image.shape[1]}x{image.shape[0]}) -> {target} '
          f'({output.shape[1]}x{output.shape[0]})')
  seconds = time.perf_counter() - start
  print(f'{written} written, {skipped} unreadable skipped, {existing} existing kept; '
        f'{megapixels:.2f} output megapixels in {seconds:.1f} s with {loaded.source}')
  return 0 if written or existing else 2


def console() -> None:
  cli.console_main(main)


if __name__ == '__main__':
  console()
