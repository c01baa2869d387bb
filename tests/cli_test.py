"""The command-line tools end to end: main, evaluate and predict, in subprocesses."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, run_module
from flax_sr import inference, input_pipeline


def one_line_error(result):
  assert result.returncode == 2, (result.stdout, result.stderr)
  assert 'Traceback' not in result.stderr
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  errors = [l for l in lines if l.startswith('error: ')]
  # Progress logging may come first; the error itself is one line, and the last.
  assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
  return errors[0]


@pytest.mark.parametrize('args, expected', [
    (('--input_size', '31'), 'valid values: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48'),
    (('--input_size', '96'), 'valid values'),
    (('--input_size', '32', '--upsample_factors', '2,1,1,1'), 'product is the scale 3'),
    (('--input_size', '16', '--upsample_factors', '3,2'), 'must be 4 positive integers'),
    (('--model', 'vdsr'), 'valid values: reference, espcn, edsr'),
    (('--dataset', 'folder'), '--dataset folder needs --data_dir'),
    (('--image_scales', '1,0'), '--image_scales must be factors in (0, 1]'),
])
def test_main_rejects_bad_options_in_one_line(args, expected, tmp_path):
  message = one_line_error(run_module('flax_sr.main', '--workdir', str(tmp_path), *args))
  assert expected in message


def test_main_help_explains_options():
  result = run_module('flax_sr.main', '--help')
  assert result.returncode == 0
  for flag in ('--input_size', '--workdir', '--data_dir', '--dataset', '--batch_size',
               '--num_epochs', '--num_train_steps', '--eval_every', '--learning_rate', '--seed',
               '--upsample_factors', '--image_scales', '--crops_by_area'):
    assert flag in result.stdout


@pytest.mark.slow
def test_main_on_real_stl10_end_to_end(shared_tfds, tmp_path):
  workdir = tmp_path / 'run'
  result = run_module('flax_sr.main', '--input_size', '32', '--data_dir', str(shared_tfds.parent),
                      '--workdir', str(workdir), *TINY, '--num_train_steps', '3',
                      '--eval_every', '2', '--eval_examples', '16')
  assert result.returncode == 0, result.stderr
  assert 'Evaluation on stl10/test (16 images, x3' in result.stdout
  for line in ('Checkpoints:', 'Logs:', 'Pictures:'):
    assert line in result.stdout
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['2', '3']
  assert (workdir / 'pictures' / 'grid_step0000002.png').is_file()
  assert (workdir / 'pictures' / 'training_curves.png').is_file()
  assert list((workdir / 'logs').glob('events.out.tfevents.*'))
  records = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert {r['step'] for r in records if 'train/loss' in r} == {1, 2, 3}
  assert any('eval/bicubic/psnr_y' in r for r in records)
  # The progress bar shows step, epoch, loss and images/s.
  assert 'img_s=' in result.stderr and 'loss=' in result.stderr


def test_main_offline_without_stl10_fails_fast(tmp_path):
  result = run_module('flax_sr.main', '--input_size', '32', '--data_dir', str(tmp_path / 'none'),
                      '--workdir', str(tmp_path / 'run'), timeout=60)
  message = one_line_error(result)
  assert 'STL-10 is not prepared' in message and '--dataset sample' in message


@pytest.mark.slow
def test_evaluate_prints_table_and_writes_json(trained_run, tmp_path):
  out = tmp_path / 'result.json'
  result = run_module('flax_sr.evaluate', '--workdir', str(trained_run), '--eval_examples', '8',
                      '--output_json', str(out), '--save_images', str(tmp_path / 'sr'))
  assert result.returncode == 0, result.stderr
  for row in ('model', 'bicubic', 'nearest', 'gain over bicubic'):
    assert row in result.stdout
  data = json.loads(out.read_text())
  assert data['scale'] == 3 and data['num_images'] == 8 and data['dataset'] == 'sample/eval'
  from flax_sr import lpips
  # LPIPS beside PSNR/SSIM whenever its weights are installed (CI installs them).
  expected = {'psnr_y', 'ssim_y', 'psnr_rgb', 'ssim_rgb'} | (
      {'lpips'} if lpips.available() else set())
  for row in ('model', 'bicubic', 'nearest'):
    assert set(data[row]) == expected
  assert ('LPIPS' in result.stdout) == lpips.available()
  # A tiny 4-step model is far below bicubic; bicubic beats nearest on real photos.
  assert data['bicubic']['psnr_y'] > data['nearest']['psnr_y'] > data['model']['psnr_y']
  saved = sorted((tmp_path / 'sr').iterdir())
  assert len(saved) == 8 and Image.open(saved[0]).size == (96, 96)


@pytest.mark.slow
def test_evaluate_on_an_image_folder(trained_run, shared_sr, tmp_path):
  out = tmp_path / 'set5.json'
  result = run_module('flax_sr.evaluate', '--workdir', str(trained_run), '--dataset', 'folder',
                      '--data_dir', str(shared_sr / 'Set5'), '--lpips', 'none',
                      '--output_json', str(out))
  assert result.returncode == 0, result.stderr
  data = json.loads(out.read_text())
  assert data['num_images'] == 5
  assert abs(data['bicubic']['psnr_y'] - 30.39) < 0.03  # published Set5 x3 bicubic


def test_tiled_upscaling_equals_untiled(trained_run):
  loaded = inference.load_run(trained_run)
  image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), np.uint8)
  whole = inference.Upscaler(loaded, tile=512)(image)
  tiled = inference.Upscaler(loaded, tile=24, tile_overlap=6)(image)
  assert whole.shape == tiled.shape == (135, 210, 3)
  assert np.abs(whole - tiled).max() <= 1 / 255


def test_tile_starts_cover_the_image():
  for length, tile, overlap in [(70, 24, 6), (45, 24, 6), (24, 24, 6), (100, 33, 4)]:
    starts = inference.tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    assert all(b - a <= tile - 2 * overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.slow
def test_predict_folder_sizes_skips_and_overwrite(trained_run, tmp_path):
  inputs = tmp_path / 'in'
  inputs.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (45, 70, 3), np.uint8)).save(inputs / 'wide.png')
  Image.fromarray(rng.integers(0, 256, (30, 20), np.uint8)).save(inputs / 'gray.jpg')
  (inputs / 'broken.png').write_bytes(b'not an image')
  args = ('--workdir', str(trained_run), '--input', str(inputs), '--output', str(tmp_path / 'out'),
          '--tile', '24', '--tile_overlap', '6')
  result = run_module('flax_sr.predict', *args)
  assert result.returncode == 0, result.stderr
  assert 'broken.png' in result.stderr and '2 written, 1 unreadable skipped' in result.stdout
  assert Image.open(tmp_path / 'out' / 'wide.png').size == (210, 135)
  assert Image.open(tmp_path / 'out' / 'gray.png').size == (60, 90)
  # Tiled output equals the untiled upscaling (to 8-bit rounding).
  whole = inference.Upscaler(inference.load_run(trained_run), tile=512)(
      input_pipeline.read_image(inputs / 'wide.png'))
  written = np.asarray(Image.open(tmp_path / 'out' / 'wide.png'), np.float32) / 255
  assert np.abs(written - whole).max() <= 1 / 255 + 1e-6
  # Existing outputs are kept unless --overwrite.
  before = (tmp_path / 'out' / 'wide.png').stat().st_mtime_ns
  again = run_module('flax_sr.predict', *args)
  assert '2 existing kept' in again.stdout
  assert (tmp_path / 'out' / 'wide.png').stat().st_mtime_ns == before
  forced = run_module('flax_sr.predict', *args, '--overwrite')
  assert '2 written' in forced.stdout


def test_predict_single_file_and_missing_input(trained_run, tmp_path):
  Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / 'x.png')
  ok = run_module('flax_sr.predict', '--workdir', str(trained_run), '--input',
                  str(tmp_path / 'x.png'), '--output', str(tmp_path / 'y.png'))
  assert ok.returncode == 0, ok.stderr
  assert Image.open(tmp_path / 'y.png').size == (36, 30)
  message = one_line_error(run_module('flax_sr.predict', '--workdir', str(trained_run),
                                      '--input', str(tmp_path / 'nope.png'), '--output',
                                      str(tmp_path / 'z.png')))
  assert 'does not exist' in message


def test_ship_pretrained_writes_weights_that_load_as_a_pretrained_name(trained_run, tmp_path,
                                                                      monkeypatch):
  import sys
  from conftest import REPO
  monkeypatch.syspath_prepend(str(REPO / 'experiments'))
  import ship_pretrained
  assert ship_pretrained.main([str(trained_run), 'mine', '--step', 'latest', '--output_dir',
                               str(tmp_path), '--trained_with', 'the test']) == 0
  meta = json.loads((tmp_path / 'mine.json').read_text())
  assert meta['trained_with'] == 'the test' and meta['config']['data_dir'] is None
  assert meta['source'].endswith('step 4 (latest)') and meta['training_data'] is None
  assert all('eval/model/psnr_y' in row for row in meta['set5_eval_history'])
  monkeypatch.setattr(inference, 'PRETRAINED_DIR', tmp_path)
  shipped, run = inference.load_pretrained('mine'), inference.load_run(trained_run, 'latest')
  lr = np.random.default_rng(0).random((1, 12, 12, 3), np.float32)
  upscale = lambda loaded: np.asarray(loaded.model.apply(loaded.variables, lr, train=False))
  # float16 weights: equal to the run's float32 model within half-precision rounding
  np.testing.assert_allclose(upscale(shipped), upscale(run), atol=2e-3)
  with pytest.raises(SystemExit):
    ship_pretrained.main([str(tmp_path / 'nowhere'), 'x', '--trained_with', 't'])
  del sys.modules['ship_pretrained']
