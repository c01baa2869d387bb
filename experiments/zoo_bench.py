#!/usr/bin/env python3
"""Benchmark: the zoo's architectures in flax_sr (JAX) beside the same PyTorch model
(spandrel's), one process, alternating, on the same shapes.

    python experiments/zoo_bench.py                      # the table on this machine
    python experiments/zoo_bench.py --quick              # tiny sizes (a smoke run)
    python experiments/zoo_bench.py --archs swinir span --output_json zoo.json
    python experiments/zoo_bench.py --attention_share   # where SwinIR's training time goes
    python experiments/zoo_bench.py --predict           # predict MP/s, 512x512 and 1080p outputs
    python experiments/zoo_bench.py --thin_ab           # the RGB head's conv: 'thin' vs XLA's

Rows: the training step (L1 loss, Adam; images/s = batch / median step time over ``--steps``
steps after warm-up, JAX and PyTorch steps alternating so that the machine's drift falls on
both; JAX compile time apart) on ``--batch`` random LR patches of
``--patch`` pixels at x4, and inference (output megapixels/s on one ``--infer_size`` LR
image). Both frameworks get the same weights (converted with flax_sr.torch_weights) and all
cores (torch.set_num_threads(os.cpu_count())). The architectures run at CPU sizes (named in
the table), not the papers' full sizes. Needs torch and spandrel (.ci/run installs both).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

if __name__ == '__main__':
  from flax_sr import host_allocator
  host_allocator.reexec_with_fast_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bench import device_name, time_alternating, time_steps  # noqa: E402
from flax_sr import attention, fast_conv, models, torch_weights  # noqa: E402
from flax_sr import train as train_lib  # noqa: E402


def reference_modules(quick: bool) -> dict:
  """name -> (description, a function building the PyTorch model at x4)."""
  import zoo_test  # the spandrel import with its torchvision stand-in, and the arch lookups
  rrdb_class = zoo_test.spandrel_class('ESRGAN', 'RRDB', 'RRDBNet')
  srvgg_class = zoo_test.spandrel_class('Compact', 'SRVGG', 'SRVGGNetCompact')
  if quick:
    return {
        'rrdb': ('RRDBNet 16 features, 1 RRDB', lambda: rrdb_class(num_filters=16, num_blocks=1,
                                                                   scale=4)),
        'srvgg': ('SRVGG 16 features, 2 convs', lambda: srvgg_class(num_feat=16, num_conv=2,
                                                                     upscale=4)),
        'rcan': ('RCAN 16 features, 1x1', lambda: zoo_test.random_rcan(
            scale=4, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4)),
        'swinir': ('SwinIR 12 wide, window 4', zoo_test.TINY['swinir']),
        'span': ('SPAN 8 features', lambda: zoo_test.random_span(feature_channels=8, upscale=4)),
        'hat': ('HAT 12 wide, window 4', zoo_test.TINY['hat']),
    }
  return {
      'rrdb': ('RRDBNet 32 features, 4 RRDBs', lambda: rrdb_class(num_filters=32, num_blocks=4,
                                                                  scale=4)),
      'srvgg': ('SRVGG 64 features, 16 convs (realesr-animevideov3)',
                lambda: srvgg_class(num_feat=64, num_conv=16, upscale=4)),
      'rcan': ('RCAN 64 features, 2 groups x 4 RCABs', lambda: zoo_test.random_rcan(
          scale=4, n_resgroups=2, n_resblocks=4, n_feats=64, reduction=16)),
      'swinir': ('SwinIR lightweight (60 wide, 4x6 layers, window 8)',
                 lambda: zoo_test.random_swinir(upscale=4, embed_dim=60, depths=[6] * 4,
                                                num_heads=[6] * 4, window_size=8,
                                                upsampler='pixelshuffledirect')),
      'span': ('SPAN 48 features (the NTIRE 2024 model)',
               lambda: zoo_test.random_span(feature_channels=48, upscale=4)),
      'hat': ('HAT 60 wide, 2 groups x 4 blocks, window 8',
              lambda: zoo_test.random_hat(upscale=4, embed_dim=60, depths=[4] * 2,
                                          num_heads=[6] * 2, window_size=8, mlp_ratio=2.0)),
  }


def bench_arch(name, description, build, args) -> dict:
  import torch
  import zoo_test
  reference = zoo_test.randomise(build()) if name in ('rrdb', 'srvgg') else build()
  arch, kwargs, params = torch_weights.from_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()})
  model = models.create_model(arch, **kwargs, conv_impl=args.conv_impl)
  rng = np.random.default_rng(0)
  lr = rng.random((args.batch, args.patch, args.patch, 3), np.float32)
  hr = rng.random((args.batch, args.patch * 4, args.patch * 4, 3), np.float32)
  row = {'arch': name, 'setting': description, 'batch': args.batch, 'patch': args.patch,
         'parameters': int(sum(np.size(p) for p in jax.tree.leaves(params)))}

  # JAX: the pure step on (LR, HR) pairs, as flax_sr's train step does after degradation.
  optimizer = optax.adam(1e-4)
  state = train_lib.TrainState.create(apply_fn=model.apply, params=params, tx=optimizer,
                                      model=model)

  @jax.jit
  def jax_step(state, lr, hr):
    def loss_fn(p):
      return jnp.mean(jnp.abs(model.apply({'params': p}, lr) - hr))
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

  holder = {'state': state}

  def run_jax():
    holder['state'], loss = jax_step(holder['state'], lr, hr)
    loss.block_until_ready()

  # PyTorch: the same step, train mode (SPAN trains its branches, as flax_sr does).
  torch.set_num_threads(os.cpu_count())
  reference.train()
  torch_opt = torch.optim.Adam(reference.parameters(), lr=1e-4)
  lr_t = torch.from_numpy(lr.transpose(0, 3, 1, 2).copy())
  hr_t = torch.from_numpy(hr.transpose(0, 3, 1, 2).copy())

  def run_torch():
    torch_opt.zero_grad()
    loss = torch.mean(torch.abs(reference(lr_t.clone()) - hr_t))
    loss.backward()
    torch_opt.step()

  timed = time_alternating({'jax': run_jax, 'torch': run_torch}, args.steps, args.warmup)
  (compile_s, jax_s), (_, torch_s) = timed['jax'], timed['torch']
  row.update(jax_train_img_s=args.batch / jax_s, torch_train_img_s=args.batch / torch_s,
             train_ratio=torch_s / jax_s, jax_compile_s=compile_s)

  image = rng.random((1, args.infer_size, args.infer_size, 3), np.float32)
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x))
  out_mp = (args.infer_size * 4) ** 2 / 1e6

  def infer_jax():
    apply(params, image).block_until_ready()

  reference.eval()
  image_t = torch.from_numpy(image.transpose(0, 3, 1, 2).copy())

  def infer_torch():
    with torch.no_grad():
      reference(image_t.clone())

  timed = time_alternating({'jax': infer_jax, 'torch': infer_torch}, max(3, args.steps // 2), 1)
  jax_inf, torch_inf = timed['jax'][1], timed['torch'][1]
  row.update(jax_infer_mp_s=out_mp / jax_inf, torch_infer_mp_s=out_mp / torch_inf,
             infer_ratio=torch_inf / jax_inf)
  return row


# predict's outputs: a 512x512 crop and a 1080p frame, at x4 (LR 128x128 and 480x270).
PREDICT_OUTPUTS = {'512x512': (128, 128), '1920x1080': (270, 480)}
PREDICT_TILE, PREDICT_TILE_OVERLAP = 96, 8  # the tiled rows: LR tiles, 8 per batch


def torch_tiled(reference, image, tile: int, overlap: int, scale: int, batch_size: int = 8):
  """PyTorch's side of a tiled prediction, as flax_sr's ``Upscaler`` does it: the same tiles
  (``inference.tile_boxes``) in batches of ``batch_size``, stitched by the same function. NCHW
  tensor in, (H*s, W*s, 3) float32 array out."""
  import torch
  from flax_sr import inference
  _, _, h, w = image.shape
  boxes, (th, tw) = inference.tile_boxes(h, w, tile, overlap)
  tiles = torch.cat([image[:, :, y:y + th, x:x + tw] for y, x in boxes])
  outputs = torch.cat([reference(tiles[i:i + batch_size])
                       for i in range(0, len(tiles), batch_size)])
  return inference.stitch_tiles(outputs.permute(0, 2, 3, 1).numpy(), boxes, (h, w), overlap,
                                scale)


def bench_predict(name, description, build, args) -> list[dict]:
  """Output megapixels/s of whole-image prediction, flax_sr's ``inference.Upscaler`` (what
  ``flax_sr.predict`` runs) beside PyTorch under ``torch.inference_mode`` (channels-last or
  not, whichever is faster there), for each size in ``PREDICT_OUTPUTS``, untiled and in
  ``PREDICT_TILE`` LR tiles."""
  import torch
  import zoo_test
  from flax_sr import inference
  reference = zoo_test.randomise(build()) if name in ('rrdb', 'srvgg') else build()
  arch, kwargs, params = torch_weights.from_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()})
  model = models.create_model(arch, **kwargs, conv_impl=args.conv_impl)
  loaded = inference.LoadedModel(None, model, {'params': params}, None, description)
  reference.eval()
  torch_formats = {'contiguous': (reference, torch.contiguous_format),
                   'channels-last': (copy.deepcopy(reference).to(memory_format=torch.channels_last),
                                     torch.channels_last)}
  torch.set_num_threads(os.cpu_count())
  rng = np.random.default_rng(0)
  rows = []
  outputs = ({'64x64': (16, 16)} if args.quick else PREDICT_OUTPUTS)
  tile, overlap = (8, 2) if args.quick else (PREDICT_TILE, PREDICT_TILE_OVERLAP)
  for size, (h, w) in outputs.items():
    image = rng.random((h, w, 3), np.float32)
    image_t = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    for tiled in (False, True):
      upscaler = inference.Upscaler(loaded, tile=tile if tiled else max(h, w),
                                    tile_overlap=overlap)
      runs = {'jax': lambda: upscaler(image)}
      for label, (network, memory_format) in torch_formats.items():
        def run_torch(network=network, memory_format=memory_format):
          with torch.inference_mode():
            x = image_t.clone().to(memory_format=memory_format)
            if tiled:
              torch_tiled(network, x, tile, overlap, 4)
            else:
              network(x)
        runs[label] = run_torch
      timed = time_alternating(runs, args.predict_steps, 1)
      torch_format = min(torch_formats, key=lambda label: timed[label][1])
      jax_s, torch_s = timed['jax'][1], timed[torch_format][1]
      mp = h * w * 16 / 1e6
      rows.append({'arch': name, 'setting': description, 'output': size, 'tiled': tiled,
                   'tile': tile if tiled else None, 'jax_mp_s': mp / jax_s,
                   'torch_mp_s': mp / torch_s, 'ratio': torch_s / jax_s,
                   'torch_memory_format': torch_format, 'jax_compile_s': timed['jax'][0]})
      print(f'{name:<7} {size:>10} {"tiled" if tiled else "whole":<6} JAX {mp / jax_s:7.3f} MP/s'
            f'  PyTorch {mp / torch_s:7.3f} ({torch_format})  ratio {torch_s / jax_s:5.2f}x'
            f'  JAX first call {timed["jax"][0]:5.1f} s', flush=True)
  return rows


def attention_share(args) -> list[dict]:
  """Where SwinIR's training time goes: the lightweight model's step (batch ``--batch`` of
  ``--patch`` LR patches) as it is and with every window attention replaced by the identity,
  and one attention layer's forward + backward at that step's shapes, JAX vs PyTorch."""
  import torch
  from flax_sr import swinir

  def model_step_seconds():
    model = swinir.SwinIR(scale=4, features=60, depths=(6,) * 4, num_heads=(6,) * 4,
                          upsampler='pixelshuffledirect', conv_impl=args.conv_impl)
    rng = np.random.default_rng(0)
    lr = rng.random((args.batch, args.patch, args.patch, 3), np.float32)
    hr = rng.random((args.batch, args.patch * 4, args.patch * 4, 3), np.float32)
    params = model.init(jax.random.key(0), lr[:1])['params']
    grad = jax.jit(jax.grad(lambda p: jnp.mean(jnp.abs(model.apply({'params': p}, lr) - hr))))
    return time_steps(lambda: jax.block_until_ready(grad(params)), args.steps, args.warmup)[1]

  full = model_step_seconds()
  original = swinir.shifted_window_attention
  swinir.shifted_window_attention = lambda attention, x, window_size, shift: x
  try:
    without = model_step_seconds()
  finally:
    swinir.shifted_window_attention = original

  windows = args.batch * (args.patch // 8) ** 2
  heads, tokens, head_dim = 6, 64, 10
  dim = heads * head_dim
  rng = np.random.default_rng(0)
  x = rng.random((windows, tokens, dim), np.float32)
  w = rng.random((dim, 3 * dim), np.float32) * 0.1
  b = rng.random((heads, tokens, tokens), np.float32)

  def jax_attention(x, w, b):
    # As the models compute it (flax_sr.attention), with a zero mask.
    q, k, v = attention.split_heads(x @ w, heads)
    out = attention.window_attention(q * head_dim**-0.5, k, v, b,
                                     np.zeros((1, tokens, tokens), np.float32))
    return out.transpose(0, 2, 1, 3).reshape(windows, tokens, dim)

  jax_grad = jax.jit(jax.grad(lambda *a: jnp.sum(jax_attention(*a)), argnums=(0, 1, 2)))
  jax_s = time_steps(lambda: jax.block_until_ready(jax_grad(x, w, b)), 20, 3)[1]
  tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))

  def torch_attention():
    qkv = (tx @ tw).reshape(windows, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    attn = torch.softmax(qkv[0] * head_dim**-0.5 @ qkv[1].transpose(-1, -2) + tb, dim=-1)
    (attn @ qkv[2]).transpose(1, 2).reshape(windows, tokens, dim).sum().backward()

  torch.set_num_threads(os.cpu_count())
  torch_s = time_steps(torch_attention, 20, 3)[1]
  return [{'swinir_step_s': full, 'swinir_step_without_attention_s': without,
           'attention_share': 1 - without / full, 'attention_layer_jax_ms': jax_s * 1e3,
           'attention_layer_torch_ms': torch_s * 1e3, 'windows': windows}]


def thin_head_ab(name, description, build, args) -> dict:
  """The JAX train step of one architecture with its thin-output convolutions (the last layer
  to RGB at HR size) under 'thin' (``fast_conv.conv_thin``, what ``tuned`` picks) and under
  XLA's own convolution (what it picked before), compiled in one process and timed
  alternating: their difference is smaller than this machine's process-to-process noise."""
  import zoo_test
  reference = zoo_test.randomise(build()) if name in ('rrdb', 'srvgg') else build()
  arch, kwargs, params = torch_weights.from_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()})
  rng = np.random.default_rng(0)
  lr = rng.random((args.batch, args.patch, args.patch, 3), np.float32)
  hr = rng.random((args.batch, args.patch * 4, args.patch * 4, 3), np.float32)
  chosen = fast_conv.choose_strategy
  runs, thin_layers = {}, []
  for head in ('xla', 'thin'):
    def choose(*a, head=head, **k):
      strategy = chosen(*a, **k)
      if strategy == 'thin':
        thin_layers.append(a[0])
        return head
      return strategy
    model = models.create_model(arch, **kwargs, conv_impl='tuned')
    state = train_lib.TrainState.create(apply_fn=model.apply, params=params,
                                        tx=optax.adam(1e-4), model=model)

    def step(state, lr, hr, model=model):
      loss, grads = jax.value_and_grad(
          lambda p: jnp.mean(jnp.abs(model.apply({'params': p}, lr) - hr)))(state.params)
      return state.apply_gradients(grads=grads), loss
    fast_conv.choose_strategy = choose
    try:
      compiled = jax.jit(step).lower(state, lr, hr).compile()
    finally:
      fast_conv.choose_strategy = chosen
    holder = {'state': state}

    def run(compiled=compiled, holder=holder):
      holder['state'], loss = compiled(holder['state'], lr, hr)
      loss.block_until_ready()
    runs[head] = run
  timed = time_alternating(runs, args.steps, args.warmup)
  xla_s, thin_s = timed['xla'][1], timed['thin'][1]
  return {'arch': name, 'setting': description, 'thin_layers': len(thin_layers) // 2,
          'xla_head_step_ms': xla_s * 1e3, 'thin_head_step_ms': thin_s * 1e3,
          'speedup': xla_s / thin_s}


def format_table(rows, device) -> str:
  lines = [f'Zoo: flax_sr (JAX) vs PyTorch (spandrel) on {device}, x4',
           f'{"arch":<8} {"setting":<52} {"params":>9} {"train img/s":>12} {"torch":>8} '
           f'{"ratio":>6} {"infer MP/s":>11} {"torch":>8} {"ratio":>6}']
  for r in rows:
    lines.append(f'{r["arch"]:<8} {r["setting"]:<52} {r["parameters"]:>9,} '
                 f'{r["jax_train_img_s"]:>12.2f} {r["torch_train_img_s"]:>8.2f} '
                 f'{r["train_ratio"]:>5.2f}x {r["jax_infer_mp_s"]:>11.3f} '
                 f'{r["torch_infer_mp_s"]:>8.3f} {r["infer_ratio"]:>5.2f}x')
  lines.append(f'train: batch {rows[0]["batch"]} of {rows[0]["patch"]}x{rows[0]["patch"]} LR '
               f'patches; ratio = PyTorch step time / JAX step time (>1: JAX faster)')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='tiny models and sizes')
  parser.add_argument('--archs', nargs='+',
                      default=['rrdb', 'srvgg', 'rcan', 'swinir', 'hat', 'span'])
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--patch', type=int, default=32, help='LR patch size (HR: 4x)')
  parser.add_argument('--infer_size', type=int, default=128, help='LR size of the inference image')
  parser.add_argument('--steps', type=int, default=6)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--conv_impl', default='tuned', choices=['xla', 'matmul', 'tuned'])
  parser.add_argument('--attention_share', action='store_true',
                      help="instead of the table: where SwinIR's training time goes")
  parser.add_argument('--predict', action='store_true',
                      help='instead of the table: whole-image prediction (MP/s) at 512x512 and '
                           '1920x1080 outputs, untiled and tiled, JAX vs PyTorch')
  parser.add_argument('--predict_steps', type=int, default=3)
  parser.add_argument('--thin_ab', action='store_true',
                      help="instead of the table: each JAX train step with its RGB head's "
                           "convolution as 'thin' against XLA's own, alternating in one process")
  parser.add_argument('--output_json')
  args = parser.parse_args(argv)
  if args.quick:
    args.batch, args.patch, args.infer_size, args.steps, args.warmup = 2, 16, 32, 2, 1
  if args.attention_share:
    split = attention_share(args)[0]
    print(f'SwinIR lightweight train step (batch {args.batch}, {args.patch}x{args.patch} LR): '
          f'{split["swinir_step_s"]:.3f} s; without window attention '
          f'{split["swinir_step_without_attention_s"]:.3f} s (attention '
          f'{100 * split["attention_share"]:.0f}% of the step)')
    print(f'one attention layer, {split["windows"]} windows x 6 heads x 64 tokens x 10 dims, '
          f'forward + backward: JAX {split["attention_layer_jax_ms"]:.1f} ms, PyTorch '
          f'{split["attention_layer_torch_ms"]:.1f} ms')
    if args.output_json:
      pathlib.Path(args.output_json).write_text(json.dumps(split, indent=2) + '\n')
    return 0
  modules = reference_modules(args.quick)
  if args.predict:
    rows = [row for name in args.archs for row in bench_predict(name, *modules[name], args)]
    if args.output_json:
      pathlib.Path(args.output_json).write_text(json.dumps(
          {'device': device_name(), 'jax': jax.__version__, 'conv_impl': args.conv_impl,
           'predict': rows}, indent=2) + '\n')
    return 0
  if args.thin_ab:
    rows = [thin_head_ab(name, *modules[name], args) for name in args.archs]
    for r in rows:
      print(f'{r["arch"]:<8} thin layers {r["thin_layers"]}: step {r["xla_head_step_ms"]:.1f} ms '
            f'with XLA\'s convolution, {r["thin_head_step_ms"]:.1f} ms with thin: '
            f'{r["speedup"]:.3f}x')
    if args.output_json:
      pathlib.Path(args.output_json).write_text(json.dumps(
          {'device': device_name(), 'jax': jax.__version__, 'thin_ab': rows}, indent=2) + '\n')
    return 0
  rows = []
  for name in args.archs:
    description, build = modules[name]
    print(f'{name}: {description}...', file=sys.stderr, flush=True)
    rows.append(bench_arch(name, description, build, args))
  device = device_name()
  print(format_table(rows, device))
  if args.output_json:
    pathlib.Path(args.output_json).write_text(json.dumps(
        {'device': device, 'jax': jax.__version__, 'conv_impl': args.conv_impl, 'rows': rows},
        indent=2) + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
