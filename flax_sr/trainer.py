"""The training loop: data, compiled steps, evaluation, pictures, checkpoints and resume.

``train_and_evaluate(config, workdir)`` is all ``main.py`` calls. Everything numerical happens
in the pure steps of ``train.py``; this file is the host-side orchestration around them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
import signal
import threading
import time
from typing import Any

import jax
import numpy as np

from flax_sr import checkpointing
from flax_sr import distributed
from flax_sr import evaluation
from flax_sr import gan as gan_lib
from flax_sr import inference
from flax_sr import lpips as lpips_lib
from flax_sr import resize as resize_lib
from flax_sr import input_pipeline
from flax_sr import metrics as metrics_lib
from flax_sr import parallel
from flax_sr import pictures
from flax_sr import reporting
from flax_sr import run_lock
from flax_sr import shape_buckets
from flax_sr import train as train_lib
from flax_sr import vgg as vgg_lib
from flax_sr.config import Config, UserError


class TrainingDiverged(UserError):
  pass


# A run stopped by a signal exits as a process killed by it would (128 + the signal number), so
# a scheduler can tell a preemption (requeue it) from a finished run (exit code 0).
SIGNAL_EXIT_CODES = {'SIGINT': 128 + signal.SIGINT, 'SIGTERM': 128 + signal.SIGTERM}


class StopRequest:
  """Turns SIGINT/SIGTERM into a flag the loop checks between steps (a second SIGINT aborts)."""

  def __init__(self):
    self.signal_name: str | None = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.signal_name is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


GAN_SCALARS = ('pixel_loss', 'perceptual_loss', 'adversarial_loss', 'd_loss', 'd_real',
               'd_fake', 'd_grad_norm')


def load_perceptual_weights(config: Config) -> dict[str, Any]:
  """The VGG weights of the perceptual loss, checked against ``--perceptual_net``."""
  weights = vgg_lib.load_weights(config.vgg_weights)
  arch = vgg_lib.architecture(weights)
  if arch != config.perceptual_net:
    raise UserError(f'--vgg_weights {config.vgg_weights} holds {arch}, but --perceptual_net is '
                    f'{config.perceptual_net}')
  return weights


def grid_examples(eval_set: input_pipeline.EvalSet, count: int, crop: int, scale: int
                  ) -> tuple[np.ndarray, np.ndarray | None]:
  """Up to ``count`` same-size HR images for pictures, spread evenly over the evaluation set (so
  a set of crops shows several photos, not neighbouring crops of the first), centre-cropped
  when whole images of different sizes; and their LR inputs when the set brings its own
  (paired data: the pictures show the real LR), else None."""
  picks = np.unique(np.linspace(0, len(eval_set) - 1, min(count, len(eval_set))).round()
                    ).astype(int)
  lr_images = eval_set.lr_images
  if eval_set.same_size:
    return eval_set.images[picks], None if lr_images is None else lr_images[picks]
  places = []  # (top, left, size) of each crop, on the scale's grid so that the LR aligns
  for i in picks:
    h, w = eval_set.images[i].shape[:2]
    size = min(crop, h, w) // scale * scale
    places.append(((h - size) // 2 // scale * scale, (w - size) // 2 // scale * scale, size))
  size = min(place[2] for place in places)
  hr = np.stack([eval_set.images[i][top:top + size, left:left + size]
                 for i, (top, left, _) in zip(picks, places)])
  if lr_images is None:
    return hr, None
  lr_size = size // scale
  lr = np.stack([lr_images[i][top // scale:top // scale + lr_size,
                              left // scale:left // scale + lr_size]
                 for i, (top, left, _) in zip(picks, places)])
  return hr, lr


def comparison_picture(state, hr_images: np.ndarray, scale: int,
                       lr_images: np.ndarray | None = None) -> np.ndarray:
  """The original design's figure: rows of LR (nearest) | bicubic | model | HR with PSNRs. The
  LR is ``lr_images`` when given (paired data), else the bicubic downscale of the HR."""
  hr = hr_images[:, :hr_images.shape[1] // scale * scale, :hr_images.shape[2] // scale * scale]
  lr = train_lib.degrade(hr, scale) if lr_images is None else lr_images
  columns = [
      metrics_lib.to_float(train_lib.nearest_upscale(lr, scale)),
      metrics_lib.to_float(resize_lib.imresize(lr, scale)),
      metrics_lib.quantize(jax.jit(train_lib.upscale, static_argnames='model')(
          jax.device_get(train_lib.inference_variables(state)), lr, model=state.model)),
  ]
  target = metrics_lib.to_float(hr)
  psnrs = [np.asarray(metrics_lib.psnr(c, target, shave=scale, y_channel=True)) for c in columns]
  rows, labels = [], []
  for i in range(len(hr)):
    rows.append([np.asarray(c[i]) for c in columns] + [hr[i]])
    labels.append([f'{name} {p[i]:.2f}dB' for name, p in zip(pictures.COLUMNS, psnrs)] + ['HR'])
  return pictures.comparison_grid(rows, labels)


def _flatten_table(prefix: str, table: dict[str, dict[str, float]]) -> dict[str, float]:
  return {f'{prefix}/{row}/{name}': v for row, values in table.items() for name, v in values.items()}


def parameter_counts(params) -> dict[str, int]:
  """Learned parameters per top-level module (in the model's order), for the start-up block."""
  return {name: int(sum(np.size(x) for x in jax.tree.leaves(tree)))
          for name, tree in params.items()}


def _format_count(n: int) -> str:
  return f'{n / 1e6:.2f}M' if n >= 1e6 else f'{n / 1e3:.1f}K' if n >= 1e3 else str(n)


def start_up_block(config: Config, train_source, eval_set, steps_per_epoch: int,
                   total_steps: int, step: int, params, mesh, workdir: pathlib.Path) -> str:
  """What the run is, in a few lines, before its first step."""
  counts = parameter_counts(params)
  modules = ', '.join(f'{name} {_format_count(n)}' for name, n in counts.items())
  device = jax.devices()[0]
  lines = [
      f'Run: {workdir}' + (f' (preset {config.preset})' if config.preset else ''),
      f'Data: {train_source.name}, {train_source.examples_per_epoch} examples per epoch '
      f'({steps_per_epoch} steps of {config.batch_size}); evaluation: {eval_set.name}, '
      f'{len(eval_set)} images' + (f'; {config.data_workers} data worker processes'
                                   if config.data_workers else ''),
      f'Training: {total_steps} steps ({total_steps / steps_per_epoch:.2f} epochs) at '
      f'x{config.scale}, ' + (f'resuming at step {step}' if step else
                              f'from {config.init_from}' if config.init_from else 'from scratch')
      + (f', at most {config.train_minutes:g} minutes' if config.train_minutes else ''),
      f'Model: {config.model}, {_format_count(sum(counts.values()))} parameters ({modules})',
  ]
  if config.degradation != 'bicubic':
    lines.append(f'Degradation: {config.degradation} on the device, random per image from seed '
                 f'{config.seed} and the step'
                 + (f'; options {config.degradation_options}' if config.degradation_options
                    else ' (Real-ESRGAN defaults)'))
  if config.discriminator:
    layers = ', '.join(f'{name} {weight:g}' for name, weight in config.perceptual_layer_weights())
    lines.append(
        f'GAN: {config.discriminator} discriminator ({config.disc_features} features), '
        f'{config.gan_loss} loss; weights: pixel ({config.loss}) {config.pixel_weight:g}, '
        f'perceptual {config.perceptual_weight:g} ({config.perceptual_net}: {layers}), '
        f'adversarial {config.adversarial_weight:g}')
  lines += [
      f'Devices: {mesh.size} x {device.device_kind} ({device.platform}), mesh '
      f'{dict(mesh.shape)}, {jax.process_count()} process(es)',
  ]
  return '\n'.join(lines)


def train_and_evaluate(config: Config, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) a run in ``workdir``; returns a summary with the final evaluation.

  ``config`` is not modified. Nothing is written to ``workdir`` until the options, the data
  and (on resume) the checkpoint's compatibility have been checked, so a failed start leaves
  nothing behind and never changes an existing run's ``config.json``.
  """
  wall_start = time.perf_counter()
  config = dataclasses.replace(config).validate()
  # Saved paths must work from any directory (evaluate/predict rebuild the run from them).
  config = dataclasses.replace(config, **{
      name: os.path.abspath(os.path.expanduser(getattr(config, name)))
      for name in ('data_dir', 'eval_data_dir') if getattr(config, name)})
  if config.init_from and os.path.exists(os.path.expanduser(config.init_from)):
    config = dataclasses.replace(config, init_from=os.path.abspath(
        os.path.expanduser(config.init_from)))
  distributed.initialize(config)
  is_main = jax.process_index() == 0
  workdir_path = pathlib.Path(workdir).expanduser().absolute()
  if workdir_path.exists() and not workdir_path.is_dir():
    raise UserError(f'--workdir {workdir_path} is a file, not a folder')
  mesh = parallel.make_mesh(config.num_devices)
  parallel.check_batch_size(config.batch_size, mesh)
  run_lock.RunLock(workdir_path, enabled=is_main).check_free()  # before minutes of loading

  resume_step = checkpointing.latest_complete_step(workdir_path)
  saved_config = None
  if resume_step is not None:
    if not config.resume:
      raise UserError(f'{workdir_path} already holds a run (checkpoint at step {resume_step}); '
                      f'continue it with --resume=true or choose another --workdir')
    saved_config = checkpointing.load_config(workdir_path)
    checkpointing.check_compatible(saved_config, config, workdir_path)
  vgg_weights = load_perceptual_weights(config) if config.discriminator else None
  initial = None
  if config.init_from and resume_step is None:
    # Read and checked before the data loads: a wrong file fails in seconds.
    initial = inference.load_initial_weights(config)

  logging.info('Loading data (%s)...', config.dataset)
  train_source = input_pipeline.make_train_source(config)
  eval_set = input_pipeline.make_eval_set(config)
  steps_per_epoch = train_source.examples_per_epoch // config.batch_size
  if steps_per_epoch < 1:
    raise UserError(f'{train_source.name} has {train_source.examples_per_epoch} examples per '
                    f'epoch, fewer than --batch_size {config.batch_size}')
  total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
  config.check_warmup(total_steps)
  if resume_step is not None and resume_step >= total_steps:
    return finished_run_summary(workdir_path, resume_step, total_steps, is_main)
  try:
    workdir_path.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise UserError(f'cannot create --workdir {workdir_path}: {error.strerror}') from error
  with run_lock.RunLock(workdir_path, enabled=is_main):
    return _train(config, workdir_path, mesh, train_source, eval_set, steps_per_epoch,
                  total_steps, resume_step, saved_config, is_main, wall_start, initial,
                  vgg_weights)


def _train(config: Config, workdir_path: pathlib.Path, mesh, train_source, eval_set,
           steps_per_epoch: int, total_steps: int, resume_step: int | None,
           saved_config: Config | None, is_main: bool, wall_start: float,
           initial: 'inference.LoadedModel | None' = None,
           vgg_weights: dict[str, Any] | None = None) -> dict[str, Any]:
  """The run itself, once everything it needs is checked and the workdir's lock is held."""
  eval_batch_size = config.eval_batch_size or config.batch_size
  state = gan_lib.run_state_from_config(config, total_steps)
  if initial is not None:
    state = train_lib.with_weights(state, initial.variables)
    logging.info('Initialised the weights from %s', initial.source)
  elif config.init_from:
    logging.info('Resuming: --init_from %s was used when the run started', config.init_from)
  state = parallel.put_replicated(state, mesh)
  position, train_seconds, loader_state = (0, 0), 0.0, None
  if resume_step is not None:
    # The newest checkpoint that restores: a truncated latest one falls back to the previous,
    # and is moved aside (not deleted) so that its step can be saved again.
    reader = checkpointing.Checkpointer(workdir_path, read_only=True)
    try:
      resume_step, state, meta = reader.restore_first_good(
          sorted(reader.all_steps(), reverse=True), state,
          move_aside_to=workdir_path / 'corrupt_checkpoints' if is_main else None)
    finally:
      reader.close()
    position, train_seconds = tuple(meta['position']), meta.get('train_seconds', 0.0)
    loader_state = meta.get('loader_state')  # grain's iterator state (--data_workers)
    logging.info('Resumed from step %d (epoch %d, batch %d)', resume_step, *position)
  # Opened after the data is loaded: nothing else touches the filesystem while Orbax sets up.
  checkpointer = checkpointing.Checkpointer(workdir_path, config.keep_checkpoints)
  step = int(jax.device_get(state.step))
  if is_main:
    # The run is known to be valid only now; a resume also drops the metrics of steps after
    # its checkpoint (a killed run's last steps are trained again and logged again).
    checkpointing.save_config(workdir_path, config)
    checkpointing.record_config_history(workdir_path, step, config, saved_config)
    reporting.drop_metrics_after(workdir_path, step)
    print(start_up_block(config, train_source, eval_set, steps_per_epoch, total_steps, step,
                         jax.device_get(state.params), mesh, workdir_path), flush=True)
  learning_rate = train_lib.make_schedule(config.learning_rate, schedule=config.lr_schedule,
                                          total_steps=total_steps,
                                          warmup_steps=config.warmup_steps)

  degradation = train_lib.degradation_from_config(config)
  if config.discriminator:
    gan_step = parallel.compile_gan_train_step(
        mesh, losses=gan_lib.GANLosses.from_config(config), ema_decay=config.ema_decay or 0.999,
        degradation=degradation)
    vgg_on_devices = parallel.put_replicated(vgg_weights, mesh)

    def train_step(state, batch):
      return gan_step(state, batch, vgg_on_devices)
  else:
    train_step = parallel.compile_train_step(mesh, loss=config.loss,
                                             ema_decay=config.ema_decay or 0.999,
                                             degradation=degradation)
  # A GAN run trades PSNR for perceptual quality: its evaluations also report LPIPS (alex)
  # when the weights are installed, so the curve shows what stage 2 buys.
  eval_lpips = lpips_lib.installed_weights('alex') if config.discriminator else None
  eval_step = parallel.compile_eval_step(mesh, lpips_weights=eval_lpips)
  eval_buckets = (config.eval_shape_buckets
                  if shape_buckets.supports_model(state.model) else 0)
  reporter = reporting.Reporter(workdir_path, enabled=is_main)
  pictures_dir = workdir_path / 'pictures'
  grid_hr, grid_lr = grid_examples(eval_set, config.num_grid_images, config.hr_size,
                                   config.scale)
  stream = input_pipeline.TrainStream(
      train_source, config.batch_size, seed=config.seed, augment=config.augment,
      position=position, process_index=jax.process_index(), process_count=jax.process_count(),
      put=lambda batch: parallel.put_batch(batch, mesh), workers=config.data_workers,
      loader_state=loader_state).start()  # reading (and worker start-up) overlaps compiling

  def meta() -> dict[str, Any]:
    return {'position': list(position), 'train_seconds': train_seconds,
            'epoch': step / steps_per_epoch, 'loader_state': stream.loader_state}

  def run_eval() -> dict[str, dict[str, float]]:
    table = evaluation.evaluate_images(eval_step, state, eval_set, mesh, eval_batch_size,
                                       eval_buckets)
    # Training minutes beside each evaluation: the quality-vs-training-time curve.
    reporter.scalars(step, {**_flatten_table('eval', table),
                            'eval/train_minutes': train_seconds / 60})
    if is_main and len(grid_hr):
      grid = comparison_picture(state, grid_hr, config.scale, grid_lr)
      pictures.save_png(grid, pictures_dir / f'grid_step{step:07d}.png')
      reporter.images(step, {'comparison': grid})
    gain = table['model']['psnr_y'] - table['bicubic']['psnr_y']
    lpips_note = (f', LPIPS {table["model"]["lpips"]:.4f} (bicubic '
                  f'{table["bicubic"]["lpips"]:.4f})' if 'lpips' in table['model'] else '')
    logging.info('step %d eval on %s: PSNR-Y %.3f dB (bicubic %.3f, gain %+.3f), SSIM-Y %.4f%s',
                 step, eval_set.name, table['model']['psnr_y'], table['bicubic']['psnr_y'], gain,
                 table['model']['ssim_y'], lpips_note)
    return table

  def check_finite(loss: float, at_step: int):
    if not math.isfinite(loss):
      last = checkpointer.latest_step()
      kept = f'the last good checkpoint (step {last}) is kept' if last else 'no checkpoint saved'
      raise TrainingDiverged(f'training diverged: loss is {loss} at step {at_step}; {kept}; '
                             f'lower --learning_rate or check the data')

  budget = config.train_minutes * 60 if config.train_minutes else None
  table, stopped_by = None, None
  if is_main:
    print('Compiling the train step (the first step takes longer)...', flush=True)
  bar = reporting.progress_bar(total_steps, step, enabled=is_main)
  window_start, window_steps, pending = time.perf_counter(), 0, None
  try:
    with StopRequest() as stop:
      while step < total_steps:
        step_start = time.perf_counter()
        batch, position = next(stream)
        if pending is None:  # the first step of this start
          logging.info('Data: first batch ready %.1f s after the start',
                       time.perf_counter() - wall_start)
        state, step_metrics = train_step(state, batch)
        step += 1
        window_steps += 1
        # Read the previous step's loss while this one runs (keeps the device busy).
        if pending is not None:
          check_finite(float(pending[1]['loss']), pending[0])
        pending = (step, step_metrics)
        train_seconds += time.perf_counter() - step_start

        # Sample the stop flag once: a signal landing later in this iteration takes effect
        # at the next step, so every stop goes through the final save below.
        signal_name = stop.signal_name
        epoch_end = step % steps_per_epoch == 0
        eval_due = (step % config.eval_every == 0) if config.eval_every else epoch_end
        out_of_time = budget is not None and train_seconds >= budget
        last = step == total_steps or out_of_time or signal_name is not None
        save_due = eval_due or last or epoch_end or step % config.checkpoint_every == 0
        if step % config.log_every == 0 or save_due:
          loss = float(step_metrics['loss'])
          check_finite(loss, step)
          elapsed = time.perf_counter() - window_start
          rate = window_steps * config.batch_size / max(elapsed, 1e-9)
          reporter.scalars(step, {'train/loss': loss, 'train/images_per_s': rate,
                                  'train/epoch': step / steps_per_epoch,
                                  'train/learning_rate': float(learning_rate(step - 1)),
                                  'train/grad_norm': float(step_metrics['grad_norm']),
                                  'train/param_norm': float(step_metrics['param_norm']),
                                  # GAN training: each loss term and D's mean logits.
                                  **{f'train/{name}': float(step_metrics[name])
                                     for name in GAN_SCALARS if name in step_metrics}})
          bar.set_postfix(epoch=f'{step / steps_per_epoch:.2f}', loss=f'{loss:.5f}',
                          img_s=f'{rate:.1f}', refresh=False)
          window_start, window_steps = time.perf_counter(), 0
        bar.update(1)
        # On a signal the checkpoint comes first and the evaluation not at all: a scheduler's
        # grace period (often 10-30 s) must not be spent compiling and evaluating.
        evaluated = (eval_due or last) and signal_name is None
        if evaluated:
          table = run_eval()
        if save_due:
          checkpointer.save(step, state, meta(), metrics=table['model'] if evaluated else None,
                            ranked=not config.discriminator)
        if out_of_time:
          stopped_by = f'the --train_minutes budget ({config.train_minutes} min)'
        elif signal_name is not None:
          stopped_by = signal_name
        if stopped_by:
          break
  except jax.errors.JaxRuntimeError as error:
    if distributed.is_lost_process_error(error):
      distributed.exit_for_lost_process(error, checkpointing.latest_complete_step(workdir_path))
    raise
  finally:
    bar.close()
    stream.close()
    checkpointer.close()
    reporter.flush()
  stopped_by_signal = stopped_by in SIGNAL_EXIT_CODES
  if table is None and not stopped_by_signal:  # no step left to train: report the state
    table = run_eval()
  reporter.close()

  curves = pictures_dir / 'training_curves.png'
  if is_main:
    pictures.plot_training_curves(reporting.read_metrics(workdir_path), curves)
  best_step, best_psnr = best_checkpoint(workdir_path)
  summary = {'step': step, 'total_steps': total_steps, 'eval': table, 'stopped_by': stopped_by,
             'workdir': str(workdir_path), 'train_seconds': train_seconds,
             'eval_dataset': eval_set.name, 'num_eval_images': len(eval_set),
             'best_step': best_step, 'best_psnr_y': best_psnr,
             'wall_seconds': time.perf_counter() - wall_start}
  if is_main:
    if table is not None and not stopped_by_signal:
      print(evaluation.format_table(table, config.scale, eval_set.name, len(eval_set)))
    if stopped_by_signal:
      print(f'Stopped by {stopped_by} at step {step}; checkpoint saved, evaluation skipped. '
            f'Resume with the same command (same --workdir {workdir_path}).')
    elif stopped_by:
      print(f'Stopped at step {step} of {total_steps} by {stopped_by}; checkpoint saved.')
    if best_step is not None:
      last = (f'last: step {step}, {table["model"]["psnr_y"]:.3f} dB' if table is not None
              and not stopped_by_signal else f'stopped at step {step}')
      print(f'Best checkpoint: step {best_step}, PSNR-Y {best_psnr:.3f} dB ({last}); '
            f'evaluate and predict use the best by default')
    print(f'Wall time {summary["wall_seconds"] / 60:.1f} min ({train_seconds / 60:.1f} min '
          f'training)')
    print(f'Checkpoints: {checkpointer.directory}\nLogs: {workdir_path / "logs"} (TensorBoard), '
          f'{workdir_path / reporting.METRICS_FILE}\nPictures: {pictures_dir}')
  return summary


def best_checkpoint(workdir: pathlib.Path) -> tuple[int | None, float | None]:
  """The best checkpoint's step and validation PSNR-Y (None, None when none was evaluated)."""
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    step = checkpointer.best_step()
    metrics = (checkpointer.meta(step).get('metrics') or {}) if step is not None else {}
  finally:
    checkpointer.close()
  psnr = metrics.get(checkpointing.BEST_METRIC)
  return (step, psnr) if psnr is not None else (None, None)


def finished_run_summary(workdir: pathlib.Path, step: int, total_steps: int,
                         is_main: bool) -> dict[str, Any]:
  """A re-run of a finished run: say so instead of training or evaluating again."""
  best_step, best_psnr = best_checkpoint(workdir)
  checkpointer = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    meta = checkpointer.meta(step)
  finally:
    checkpointer.close()
  if is_main:
    best = (f'; best checkpoint: step {best_step}, PSNR-Y {best_psnr:.3f} dB'
            if best_step is not None else '')
    print(f'{workdir} is finished: step {step} of {total_steps}{best}. Evaluate it with '
          f'python -m flax_sr.evaluate --workdir {workdir}, or train longer with a larger '
          f'--num_train_steps.')
  return {'step': step, 'total_steps': total_steps, 'eval': None, 'stopped_by': 'finished',
          'workdir': str(workdir), 'train_seconds': meta.get('train_seconds', 0.0),
          'best_step': best_step, 'best_psnr_y': best_psnr, 'finished': True}
