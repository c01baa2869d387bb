"""``python -m flax_sr.benchmark``: the paper table, its five files, agreement with ``predict``,
the standard sets' layouts, multi-add counting, and one-line errors on bad input."""

import csv
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from flax_sr import (benchmark, cli, complexity, input_pipeline, lpips, metrics, models, predict,
                     resize)

PROTOCOL = pathlib.Path(__file__).parent / 'data' / 'protocol'
PUBLISHED_SET5_BICUBIC = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}


def run(tool, argv, capsys):
  """Runs a tool as its command does: (exit code, stdout, stderr)."""
  try:
    code = cli.run_cli(tool.main, [str(a) for a in argv])
  except SystemExit as stop:  # argparse
    code = stop.code
  out, err = capsys.readouterr()
  return code, out, err


def one_line_error(code, err):
  assert code == 2 and 'Traceback' not in err, err
  lines = [l for l in err.strip().splitlines() if l.strip()]
  assert lines[-1].startswith('error: ') and sum(l.startswith('error: ') for l in lines) == 1, err
  return lines[-1]


@pytest.fixture
def small_set(tmp_path):
  """A set folder: the vendored butterfly crop, a one-channel photo, a broken file and a
  thumbnail too small to score at x3."""
  folder = tmp_path / 'Tiny'
  folder.mkdir()
  (folder / 'butterfly.png').write_bytes((PROTOCOL / 'butterfly_hr.png').read_bytes())
  photo = input_pipeline.read_image(input_pipeline._sample_photo_dir() / 'chelsea.png')
  grey = np.asarray(Image.fromarray(photo[:100, :130]).convert('L'))
  Image.fromarray(grey).save(folder / 'grey.png')
  (folder / 'broken.png').write_bytes(b'not a png')
  Image.fromarray(photo[:14, :14]).save(folder / 'thumb.png')
  return folder


def test_table_files_and_numbers(small_set, tmp_path, capsys):
  out_dir = tmp_path / 'table'
  code, out, err = run(benchmark, ['--pretrained', 'x3', '--sets', small_set, '--output_dir',
                                   out_dir, '--no_progress'], capsys)
  assert code == 0, err
  assert sorted(p.name for p in out_dir.iterdir()) == sorted(benchmark.OUTPUT_FILES)
  result = json.loads((out_dir / 'benchmark.json').read_text())
  # The shipped x3 is EDSR 64x12 with channel attention and the direct upsampler: head conv
  # 9*3*64 + 64, 25 body convs of 9*64*64 + 64, in each of the 12 blocks the attention's dense
  # layers 64*4 + 4 and 4*64 + 64, and one conv to 27 sub-pixel channels 9*64*27 + 27.
  assert result['scale'] == 3
  assert result['params'] == 1_792 + 25 * 36_928 + 12 * (260 + 320) + 15_579
  assert set(result['sets']['Tiny']) == {'model', 'bicubic', 'nearest'}
  assert set(result['ms_per_image']) == {'Tiny'} and result['ms_per_image']['Tiny'] > 0
  assert result['images']['Tiny']['scored'] == 2
  assert sorted(result['images']['Tiny']['skipped']) == ['broken.png', 'thumb.png']
  assert '2 images scored, 2 skipped' in out and 'broken.png' in out
  # The bicubic row is the protocol applied by hand: MATLAB bicubic down and up, Y, shave 3;
  # the grey file scored on its grey level.
  expected = []
  for name in ('butterfly.png', 'grey.png'):
    hr, gray = input_pipeline.read_image_and_gray(small_set / name)
    hr = resize.crop_to_multiple(hr, 3)
    up = resize.imresize(resize.bicubic_downscale(hr, 3), 3)
    expected.append(float(metrics.psnr(up, hr, shave=3, y_channel=True, gray=gray)))
  per_image = list(csv.DictReader((out_dir / 'benchmark_per_image.csv').open()))
  assert [r['image'] for r in per_image] == ['butterfly.png', 'grey.png']
  assert [r['gray'] for r in per_image] == ['False', 'True']
  np.testing.assert_allclose([float(r['bicubic_psnr_y']) for r in per_image], expected,
                             atol=1e-4)
  assert result['sets']['Tiny']['bicubic']['psnr_y'] == pytest.approx(np.mean(expected), abs=1e-4)
  # The shipped x3 model is well above bicubic, which is above nearest.
  rows = result['sets']['Tiny']
  assert rows['model']['psnr_y'] > rows['bicubic']['psnr_y'] + 1 > rows['nearest']['psnr_y'] + 1
  table = (out_dir / 'benchmark.md').read_text()
  # LPIPS beside PSNR/SSIM in every cell whenever its weights are installed (CI installs them).
  cell = 'PSNR/SSIM/LPIPS' if lpips.available() else 'PSNR/SSIM'
  assert f'| Method | Scale | Params | Multi-Adds (720p) | Tiny {cell} | ms/image |' in table
  assert ('Tiny_lpips' in (out_dir / 'benchmark.csv').read_text()) == lpips.available()
  tex = (out_dir / 'benchmark.tex').read_text()
  assert r'\toprule' in tex and r'$\times$3' in tex and r'\bottomrule' in tex
  rows_csv = list(csv.DictReader((out_dir / 'benchmark.csv').open()))
  assert [r['method'] for r in rows_csv][1:] == ['bicubic', 'nearest']
  assert float(rows_csv[1]['Tiny_psnr_y']) == pytest.approx(rows['bicubic']['psnr_y'], abs=1e-5)
  # An existing table is not overwritten without --overwrite.
  code, _, err = run(benchmark, ['--pretrained', 'x3', '--sets', small_set, '--output_dir',
                                 out_dir], capsys)
  assert '--overwrite' in one_line_error(code, err)


def test_benchmark_agrees_with_predict_pngs(tmp_path, capsys):
  """The PSNR the table reports is the PSNR of the PNG that predict writes for the same LR."""
  folder = tmp_path / 'One'
  folder.mkdir()
  hr = input_pipeline.read_image(PROTOCOL / 'butterfly_hr.png')
  Image.fromarray(hr).save(folder / 'butterfly.png')
  code, _, err = run(benchmark, ['--pretrained', 'x3', '--sets', folder, '--output_dir',
                                 tmp_path / 'table', '--baselines', 'none', '--timing_runs', '0',
                                 '--no_progress'], capsys)
  assert code == 0, err
  reported = json.loads((tmp_path / 'table' / 'benchmark.json').read_text())
  assert reported['rows'] == ['model'] and reported['ms_per_image'] == {'One': None}
  lr = np.asarray(resize.bicubic_downscale(hr, 3))
  Image.fromarray(lr).save(tmp_path / 'lr.png')
  code, _, err = run(predict, ['--pretrained', 'x3', '--input', tmp_path / 'lr.png',
                               '--output', tmp_path / 'sr.png'], capsys)
  assert code == 0, err
  written = input_pipeline.read_image(tmp_path / 'sr.png')
  assert reported['sets']['One']['model']['psnr_y'] == pytest.approx(
      float(metrics.psnr(written, hr, shave=3, y_channel=True)), abs=0.01)


@pytest.mark.parametrize('name', ['x2', 'x3', 'x4'])
def test_tiling_changes_the_output_by_at_most_a_level_or_two(name):
  """Convolutions alone reach no further than the overlap: at most one 8-bit level (rounding).
  The shipped models' channel attention pools each tile on its own, so a few pixels move by two
  (measured on x3: mean 0.07 levels, 0.02% of values above one)."""
  from flax_sr import inference
  loaded = inference.load_pretrained(name)
  scale = loaded.model.scale
  photo = input_pipeline.read_image(input_pipeline._sample_photo_dir() / 'chelsea.png')
  lr = np.asarray(resize.bicubic_downscale(
      resize.crop_to_multiple(photo[:210, :300], scale), scale))
  whole = inference.Upscaler(loaded, tile=512)(lr)
  tiled = inference.Upscaler(loaded, tile=48, tile_overlap=16)(lr)
  levels = np.abs(np.round(whole * 255) - np.round(tiled * 255))
  assert levels.max() <= 2 and levels.mean() < 0.2


def test_finds_the_standard_sets_in_common_layouts(tmp_path):
  root = tmp_path / 'benchmark'
  (root / 'Set5' / 'HR').mkdir(parents=True)
  (root / 'Set5' / 'LR_bicubic' / 'X2').mkdir(parents=True)
  (root / 'more' / 'bsd100').mkdir(parents=True)
  (root / 'Urban100' / 'GTmod12').mkdir(parents=True)
  found, missing = benchmark.find_standard_sets(root)
  assert [name for name, _ in found] == ['Set5', 'B100', 'Urban100']
  assert missing == ['Set14', 'Manga109']
  folders = dict(found)
  # EDSR's layout holds HR and LR side by side: only HR is read.
  assert benchmark.hr_folder(folders['Set5']) == root / 'Set5' / 'HR'
  assert benchmark.hr_folder(folders['Urban100']) == root / 'Urban100' / 'GTmod12'
  assert benchmark.hr_folder(folders['B100']) == root / 'more' / 'bsd100'


def test_set5_bicubic_rows_as_published(shared_sr, tmp_path, capsys):
  for scale, (psnr, ssim) in PUBLISHED_SET5_BICUBIC.items():
    out_dir = tmp_path / f'x{scale}'
    code, _, err = run(benchmark, ['--scale', scale, '--baselines', 'bicubic', '--benchmark_dir',
                                   shared_sr, '--output_dir', out_dir, '--no_progress'], capsys)
    assert code == 0, err
    row = json.loads((out_dir / 'benchmark.json').read_text())['sets']['Set5']['bicubic']
    assert abs(row['psnr_y'] - psnr) < 0.03 and abs(row['ssim_y'] - ssim) < 0.001, scale
    if scale == 4 and lpips.available():
      # The PyTorch lpips package's Set5 x4 bicubic mean (experiments/RESULTS.md, section 8).
      assert abs(row['lpips'] - 0.3398) < 1e-4
      assert 'LPIPS' in (out_dir / 'benchmark.md').read_text()


def test_lpips_left_out_in_one_line_without_its_weights(small_set, tmp_path, capsys,
                                                       monkeypatch):
  monkeypatch.setattr(lpips, 'available', lambda net='alex': False)
  code, out, err = run(benchmark, ['--scale', '2', '--baselines', 'bicubic', '--sets', small_set,
                                   '--output_dir', tmp_path / 'out', '--no_progress'], capsys)
  assert code == 0 and lpips.MISSING_NOTE in err
  result = json.loads((tmp_path / 'out' / 'benchmark.json').read_text())
  assert 'lpips' not in next(iter(result['sets'].values()))['bicubic']
  assert 'LPIPS' not in out.split('* ')[0]  # no column, one note


def test_realistic_degradation_rows_are_reproducible(tmp_path, capsys):
  """--degradation realesrgan: each image degraded once with fold_in(key(seed), index) (as
  evaluate does), so two runs give the same table, and its numbers are those of that LR."""
  from flax_sr import degradation_settings
  folder = tmp_path / 'One'
  folder.mkdir()
  (folder / 'butterfly.png').write_bytes((PROTOCOL / 'butterfly_hr.png').read_bytes())
  tables = []
  for run_index in range(2):
    out_dir = tmp_path / f'out{run_index}'
    code, out, err = run(benchmark, ['--scale', '4', '--baselines', 'bicubic', '--sets', folder,
                                     '--degradation', 'realesrgan', '--degradation_seed', '4',
                                     '--lpips', 'none', '--output_dir', out_dir, '--no_progress'],
                         capsys)
    assert code == 0, err
    assert 'LR by the Real-ESRGAN degradation' in out
    tables.append(json.loads((out_dir / 'benchmark.json').read_text()))
  assert tables[0]['degradation'] == {'kind': 'realesrgan', 'seed': 4, 'options': None}
  assert tables[0]['sets'] == tables[1]['sets']
  hr = resize.crop_to_multiple(input_pipeline.read_image(folder / 'butterfly.png'), 4)
  scorer = benchmark.Scorer(4, None, degradation_settings.RealESRGANSettings(), 4)
  lr = scorer.degrade(hr, 0)
  assert np.mean(lr != scorer.degrade(hr, 1)) > 0.5  # image 1 of a set: other draws
  def psnr_of_bicubic(lr_image):
    return float(metrics.psnr(metrics.to_float(resize.imresize(lr_image, 4)),
                              metrics.to_float(hr), shave=4, y_channel=True))
  assert abs(tables[0]['sets']['One']['bicubic']['psnr_y'] - psnr_of_bicubic(lr)) < 1e-3
  # Realistic LR is harder than bicubic LR.
  assert psnr_of_bicubic(lr) < psnr_of_bicubic(resize.bicubic_downscale(hr, 4)) - 1


def bad_input_cases(tmp_path, small_set):
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'notes.txt').write_text('no images')
  tiny = tmp_path / 'tinyset'
  tiny.mkdir()
  Image.fromarray(np.zeros((2, 40, 3), np.uint8)).save(tiny / 'sliver.png')
  a_file = tmp_path / 'a_file'
  a_file.write_text('x')
  return [
      (['--pretrained', 'x3', '--sets', empty], 'no usable image'),
      (['--pretrained', 'x3', '--sets', tmp_path / 'missing'], 'does not exist'),
      (['--pretrained', 'x3', '--sets', tiny], 'smaller than the scale 3'),
      (['--pretrained', 'x3', '--scale', '4', '--sets', small_set], 'is a x3 model'),
      (['--pretrained', 'x9', '--sets', small_set], 'available: x2, x3, x4'),
      (['--sets', small_set], 'or --scale S'),
      (['--scale', '0', '--sets', small_set], 'positive integer'),
      (['--pretrained', 'x3', '--sets', small_set, '--baselines', 'lanczos'], "'lanczos'"),
      (['--pretrained', 'x3', '--sets', small_set, '--tile', '16', '--tile_overlap', '8'],
       'twice --tile_overlap'),
      (['--pretrained', 'x3', '--sets', small_set, '--output_dir', a_file], 'is a file'),
      (['--workdir', tmp_path, '--step', 'abc', '--sets', small_set], "got 'abc'"),
      (['--pretrained', 'x3', '--benchmark_dir', small_set], 'no standard set'),
      (['--scale', '2', '--sets', small_set, '--degradation_seed', '3'],
       'applies to --degradation realesrgan only'),
      (['--scale', '2', '--sets', small_set, '--degradation', 'realesrgan',
        '--degradation_options', 'jpeg_range=20:200'], 'jpeg_range=20:200 is invalid'),
  ]


def test_bad_input_is_one_line(tmp_path, small_set, capsys):
  for argv, expected in bad_input_cases(tmp_path, small_set):
    code, _, err = run(benchmark, argv + ['--output_dir', tmp_path / 'never']
                       if '--output_dir' not in argv else argv, capsys)
    assert expected in one_line_error(code, err), (argv, err)
  assert not (tmp_path / 'never').exists()


def test_multiply_adds_count_convolutions_as_papers_do():
  import jax
  import jax.numpy as jnp
  model = models.EDSR(scale=2, features=8, num_res_blocks=2, global_residual=True,
                      conv_impl='tuned')
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  h, w = 6, 10
  pixels = h * w
  per_pixel = (3 * 8 * 9            # head
               + 5 * 8 * 8 * 9      # 2 blocks x 2 convs + body tail
               + 8 * 32 * 9         # x2 upsampler conv to 4x the channels
               + 4 * 8 * 3 * 9)     # tail at the 2x output (4 output pixels per LR pixel)
  # The bicubic upscale of the global residual (a fixed matrix product) is not counted, and
  # the Winograd convolutions are counted as the direct ones they compute.
  assert complexity.count_multiply_adds(model, variables, (h, w)) == pixels * per_pixel
  assert complexity.count_parameters(variables['params']) == sum(
      np.size(x) for x in jax.tree.leaves(variables['params']))
  assert complexity.lr_size_for_output(3) == (240, 427)
  assert complexity.lr_size_for_output(4) == (180, 320)

  class Attention(models.nn.Module):
    @models.nn.compact
    def __call__(self, x, train=False):
      q = models.nn.Dense(4, name='q')(x)  # a learned product: 6*10 pixels x 3 -> 4
      return jnp.einsum('bhwc,bHWc->bhwHW', q, q)  # a product of two computed operands

  attention = Attention()
  params = attention.init(jax.random.key(0), jnp.zeros((1, h, w, 3)))
  assert complexity.count_multiply_adds(attention, params, (h, w)) == (
      pixels * 3 * 4 + pixels * pixels * 4)


def test_a_flat_image_in_a_set_is_scored_finite(tmp_path, capsys):
  folder = tmp_path / 'Flat'
  folder.mkdir()
  Image.fromarray(np.full((48, 48, 3), 90, np.uint8)).save(folder / 'flat.png')
  (folder / 'butterfly.png').write_bytes((PROTOCOL / 'butterfly_hr.png').read_bytes())
  code, _, err = run(benchmark, ['--scale', '3', '--sets', folder, '--output_dir',
                                 tmp_path / 'out', '--no_progress'], capsys)
  assert code == 0, err
  text = (tmp_path / 'out' / 'benchmark.json').read_text()
  result = json.loads(text)  # strict JSON: no Infinity/NaN
  assert 'Infinity' not in text and 'NaN' not in text
  rows = {r['image']: r for r in csv.DictReader((tmp_path / 'out' / 'benchmark_per_image.csv').open())}
  # A flat image comes back exactly from bicubic: its PSNR is the documented cap, not inf.
  assert float(rows['flat.png']['bicubic_psnr_y']) == pytest.approx(metrics.PSNR_CAP_DB)
  assert result['sets']['Flat']['bicubic']['psnr_y'] == pytest.approx(
      (metrics.PSNR_CAP_DB + float(rows['butterfly.png']['bicubic_psnr_y'])) / 2, abs=1e-4)
