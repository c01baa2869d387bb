"""Every experiment file and the benchmark run in their quick modes, so none of them rots."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, SHARED_SR, SHARED_TFDS, require

EXPERIMENTS = {'reference_x3': SHARED_TFDS, 'reference_x6': SHARED_TFDS,
               'improved_x3': SHARED_TFDS, 'improved_x6': SHARED_TFDS,
               't91_x3': SHARED_SR / 'T91', 'sr291_x3': SHARED_SR / 'BSD200'}


def run_script(*args, timeout=300):
  return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                        timeout=timeout, cwd=REPO)


# Run end to end: one experiment (tfds STL-10). The others are the same runner
# (experiments/common.py) with another preset, checked below without training; the folder data
# path they use is run end to end by cli_test and pretrained_test (t91_x3's quick mode took
# ~2.5 of CI's minutes for no code of its own).
RUN_IN_CI = ('reference_x3',)


@pytest.mark.slow
@pytest.mark.parametrize('name', RUN_IN_CI)
def test_experiment_quick_mode(name, tmp_path):
  require(EXPERIMENTS[name])
  result = run_script(REPO / 'experiments' / f'{name}.py', '--workdir', tmp_path, '--quick')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'nearest' in result.stdout and 'gain over bicubic' in result.stdout
  data = json.loads((tmp_path / 'results.json').read_text())
  assert data['experiment'] == name and data['steps'] == 2
  assert set(data) >= {'model', 'bicubic', 'nearest', 'scale'}


@pytest.mark.parametrize('name', sorted(EXPERIMENTS) + ['esrgan_x4', 'realesrgan_x4'])
def test_every_experiment_trains_a_valid_preset(name, monkeypatch):
  """Each experiment file runs the preset of its name (esrgan_x4: its two stages;
  realesrgan_x4: its preset, on bicubic and on realistic LR), and those presets validate as
  the experiment sets them up, full size and quick."""
  import dataclasses
  monkeypatch.syspath_prepend(str(REPO / 'experiments'))
  import common
  source = (REPO / 'experiments' / f'{name}.py').read_text()
  if name == 'esrgan_x4':
    import esrgan_x4
    presets = esrgan_x4.STAGES
  elif name == 'realesrgan_x4':
    import realesrgan_x4
    for kind in realesrgan_x4.TRAINING:
      for quick in (False, True):
        config = common.experiment_config(realesrgan_x4.PRESET, data_dir='unused', quick=quick)
        assert dataclasses.replace(config, degradation=kind).validate().degradation == kind
    return
  else:
    assert f"run('{name}'" in source
    presets = (name,)
  for preset in presets:
    for quick in (False, True):
      config = common.experiment_config(preset, data_dir='unused', quick=quick).validate()
      assert config.preset == preset


@pytest.mark.slow
def test_benchmark_quick_mode(tmp_path):
  out = tmp_path / 'bench.json'
  # Two of the default six training rows (each compiles a step): the reference model's two
  # placements at one size, and EDSR.
  # --gan: the GAN step of a shrunken esrgan_cpu_gan_x4 beside its PSNR step, and its parts.
  result = run_script(REPO / 'experiments' / 'bench.py', '--quick', '--models', 'reference',
                      'edsr', '--sizes', '16', '--gan', '--output_json', out)
  assert result.returncode == 0, result.stderr[-3000:]
  gan_row, = json.loads((tmp_path / 'bench_extra.json').read_text())['gan']
  assert gan_row['preset'] == 'esrgan_cpu_gan_x4' and gan_row['gan_over_psnr'] > 1
  assert all(gan_row[f'{part}_ms'] > 0 for part in ('perceptual', 'discriminator'))
  import importlib.util
  if importlib.util.find_spec('torch') and importlib.util.find_spec('spandrel'):
    # ... and beside the same step in PyTorch (experiments/torch_esrgan_step.py).
    assert gan_row['torch_gan_step_ms'] > 0 and gan_row['gan_vs_torch'] > 0
  rows = json.loads(out.read_text())
  assert {r['model'] for r in rows} == {'reference', 'edsr'}
  assert len([r for r in rows if r['model'] == 'reference']) == 2  # late/early
  for row in rows:
    assert set(row) >= {'model', 'input_size', 'factors', 'batch', 'dtype', 'images_per_s',
                        'gflops', 'gb_per_step', 'gb_per_s', 'torch_images_per_s',
                        'ratio_vs_torch'}
    assert row['images_per_s'] > 0 and row['torch_images_per_s'] is None
    # XLA:CPU's cost analysis of the timed step: at least the batch of HR images is read.
    assert row['gb_per_step'] * 1e9 > 4 * 96 * 96 * 3 and row['gb_per_s'] > 0
  assert 'input pipeline' in result.stdout and 'megapixels/s' in result.stdout


@pytest.mark.slow
def test_conv_layer_benchmark_quick_mode(tmp_path):
  out = tmp_path / 'layers.json'
  result = run_script(REPO / 'experiments' / 'bench_conv_layers.py', '--quick', '--output_json',
                      out)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(out.read_text())
  assert [r['layer'] for r in rows] == ['2,16,8,8', '2,64,8,3']
  # The thin-output layer at a 64x64 image is one the policy gives to 'thin'.
  assert [r['chosen'] for r in rows] == ['winograd', 'thin']
  strategies = ('xla', 'thin', 'im2col', 'hybrid', 'winograd', 'winograd4')
  for row in rows:
    assert all(row[f'{s}_ms'] > 0 for s in strategies)
    assert row['fastest'] in strategies
  bad = run_script(REPO / 'experiments' / 'bench_conv_layers.py', '--layers', '2,16,8')
  assert bad.returncode == 2 and 'batch,image,c_in,c_out' in bad.stderr


def test_zoo_benchmark_quick_mode(tmp_path):
  """One architecture of experiments/zoo_bench.py (JAX beside PyTorch), tiny sizes."""
  import importlib.util
  if not (importlib.util.find_spec('torch') and importlib.util.find_spec('spandrel')):
    pytest.skip('the zoo benchmark compares with PyTorch (torch and spandrel)')
  out = tmp_path / 'zoo.json'
  result = run_script(REPO / 'experiments' / 'zoo_bench.py', '--quick', '--archs', 'srvgg',
                      '--output_json', out)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'srvgg' in result.stdout and 'ratio' in result.stdout
  row, = json.loads(out.read_text())['rows']
  assert row['train_ratio'] > 0 and row['infer_ratio'] > 0 and row['parameters'] == 12_096


def test_zoo_predict_benchmark_tiles_pytorch_as_flax_sr_does(monkeypatch):
  """zoo_bench --predict times the same computation on both sides: its PyTorch tiling (the
  Upscaler's boxes and stitching, its own batches) gives flax_sr's Upscaler output for the same
  weights."""
  import importlib.util
  if not (importlib.util.find_spec('torch') and importlib.util.find_spec('spandrel')):
    pytest.skip('the zoo benchmark compares with PyTorch (torch and spandrel)')
  import numpy as np
  import torch
  monkeypatch.syspath_prepend(str(REPO / 'experiments'))
  import zoo_bench
  import zoo_test
  from flax_sr import inference, models, torch_weights
  reference = zoo_test.randomise(zoo_bench.reference_modules(True)['srvgg'][1]()).eval()
  arch, kwargs, params = torch_weights.from_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()})
  loaded = inference.LoadedModel(None, models.create_model(arch, **kwargs), {'params': params},
                                 None, 'srvgg')
  image = np.random.default_rng(0).random((13, 21, 3), np.float32)
  flax_sr_out = inference.Upscaler(loaded, tile=8, tile_overlap=2)(image)
  with torch.inference_mode():
    torch_out = zoo_bench.torch_tiled(reference, torch.from_numpy(
        image.transpose(2, 0, 1)[None].copy()), 8, 2, 4)
  assert flax_sr_out.shape == torch_out.shape == (52, 84, 3)
  # flax_sr's upscaler returns images, clipped to [0, 1]; the random network's raw output is not.
  np.testing.assert_allclose(flax_sr_out, np.clip(torch_out, 0, 1), atol=1e-4)


def test_training_curve_reads_the_logged_evaluations(tmp_path, monkeypatch, capsys):
  monkeypatch.syspath_prepend(str(REPO / 'experiments'))
  import training_curve
  rows = [{'step': 100, 'train/loss': 0.1},
          {'step': 400, 'eval/model/psnr_y': 33.0, 'eval/train_minutes': 7.04},
          {'step': 800, 'eval/model/psnr_y': 33.41, 'eval/train_minutes': 14.2},
          # the run resumed from step 800 and evaluated it again
          {'step': 800, 'eval/model/psnr_y': 33.4, 'eval/train_minutes': 14.3},
          {'step': 1200, 'eval/model/psnr_y': 33.38, 'eval/train_minutes': 21.0}]
  (tmp_path / 'metrics.jsonl').write_text(
      '\n'.join(json.dumps(r) for r in rows) + '\n{"step": 1300, "eval/mo')
  points = training_curve.read_curve(tmp_path, 'eval/model/psnr_y')
  assert [(p['step'], p['value']) for p in points] == [(400, 33.0), (800, 33.4), (1200, 33.38)]
  assert training_curve.main([str(tmp_path), '--output_json', str(tmp_path / 'c.json')]) == 0
  table = capsys.readouterr().out
  assert '| training minutes | 7.0 | 14.3 | 21.0 |' in table
  assert '| step | 400 | 800 | 1,200 |' in table
  assert '| eval/model/psnr_y | 33.000 | **33.400** | 33.380 |' in table
  assert len(json.loads((tmp_path / 'c.json').read_text())[str(tmp_path)]) == 3
  with pytest.raises(SystemExit, match='does not exist'):
    training_curve.main([str(tmp_path / 'nowhere')])


def test_step_profile_splits_the_step_into_stages(tmp_path, monkeypatch, capsys):
  """experiments/step_profile.py on a tiny reference step: XLA's trace is read, every traced
  operation is found in the compiled program, and the stages are named by what made them."""
  monkeypatch.syspath_prepend(str(REPO / 'experiments'))
  import step_profile
  out = tmp_path / 'profile.json'
  assert step_profile.main(['--input_size', '16', '--factors', '2,3,1,1', '--features', '8',
                            '--batch', '2', '--steps', '1', '--output_json', str(out)]) == 0
  data = json.loads(out.read_text())
  stages = data['stages_ms']
  assert data['step_ms'] > 0 and data['operations_ms'] == pytest.approx(sum(stages.values()))
  # The Winograd convolutions' products, their transforms (fast_conv.py) and Adam (optax).
  assert stages['products (dot, convolution)'] > 0
  assert any('conv transforms' in stage for stage in stages)
  assert any('optimizer' in stage for stage in stages)
  assert data['slowest'] and all(row['ms'] > 0 for row in data['slowest'])
  assert 'step wall time' in capsys.readouterr().out
