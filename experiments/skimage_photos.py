"""Copies scikit-image's natural photographs into a folder: a held-out check for models trained
on T91/BSD200 and selected on Set5 (none of these is in either), when no other benchmark set
is on the machine.

    python experiments/skimage_photos.py photos/
    python -m flax_sr.evaluate --workdir runs/sr291_x3 --dataset folder --data_dir photos/

Nine photos ship in scikit-image's wheel (any version since 0.19): astronaut, camera (grey),
chelsea, coffee, motorcycle_right, rocket (JPEG), and the textures brick, grass, gravel (grey).
"""

import pathlib
import shutil
import sys

PHOTOS = ('astronaut.png', 'camera.png', 'chelsea.png', 'coffee.png', 'motorcycle_right.png',
          'rocket.jpg', 'brick.png', 'grass.png', 'gravel.png')


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 1:
    print(__doc__, file=sys.stderr)
    return 2
  import skimage
  source = pathlib.Path(skimage.__file__).parent / 'data'
  out = pathlib.Path(argv[0])
  out.mkdir(parents=True, exist_ok=True)
  for name in PHOTOS:
    shutil.copyfile(source / name, out / name)
  print(f'wrote {len(PHOTOS)} photos to {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
