"""Pictures of results: comparison grids (LR nearest | bicubic | model | HR, each with its PSNR)
and the training curves (loss and validation PSNR against steps, bicubic as a line)."""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

COLUMNS = ('LR (nearest)', 'bicubic', 'model', 'HR')


def to_uint8(image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def comparison_grid(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[Sequence[str]],
                    zoom: int = 2, pad: int = 4, label_height: int = 14) -> np.ndarray:
  """Tiles ``rows`` of same-size images (uint8 or float in [0, 1]) with a text label above each
  image; each image is enlarged ``zoom`` times (nearest) so small crops stay visible."""
  from PIL import Image, ImageDraw
  cells = [[np.kron(to_uint8(im), np.ones((zoom, zoom, 1), np.uint8)) for im in row]
           for row in rows]
  cell_h, cell_w = cells[0][0].shape[:2]
  n_rows, n_cols = len(cells), max(len(r) for r in cells)
  height = n_rows * (cell_h + label_height + pad) + pad
  width = n_cols * (cell_w + pad) + pad
  canvas = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for r, row in enumerate(cells):
    for c, cell in enumerate(row):
      x = pad + c * (cell_w + pad)
      y = pad + r * (cell_h + label_height + pad)
      draw.text((x, y), labels[r][c], fill=(0, 0, 0))
      canvas.paste(Image.fromarray(cell), (x, y + label_height))
  return np.asarray(canvas)


def save_png(image: np.ndarray, path: str | pathlib.Path):
  from PIL import Image
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + '.tmp')
  Image.fromarray(to_uint8(image)).save(tmp, format='PNG')
  tmp.replace(path)


def plot_training_curves(records: Sequence[dict], path: str | pathlib.Path) -> bool:
  """Loss and validation PSNR (Y) against steps from the run's metric records; bicubic's PSNR
  as a horizontal line. Returns False when there is nothing to plot."""
  def series(key):  # a non-finite value is logged as null
    return [(r['step'], r[key]) for r in records if r.get(key) is not None]
  train, val = series('train/loss'), series('eval/model/psnr_y')
  bicubic = [value for _, value in series('eval/bicubic/psnr_y')]
  if not train and not val:
    return False
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 4))
  if train:
    ax_loss.plot(*zip(*train))
    ax_loss.set_yscale('log')
  ax_loss.set(xlabel='step', ylabel='training loss', title='training loss')
  if val:
    ax_psnr.plot(*zip(*val), marker='o', label='model')
  if bicubic:
    ax_psnr.axhline(bicubic[-1], color='gray', linestyle='--', label=f'bicubic {bicubic[-1]:.2f} dB')
  ax_psnr.set(xlabel='step', ylabel='PSNR (Y, dB)', title='validation PSNR')
  ax_psnr.legend()
  fig.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True
