"""Data parallelism: one device mesh axis 'data', state replicated, batches split over it.

Why ``jax.jit`` over a ``Mesh`` (big_vision's pattern) rather than ``jax.pmap``: the step stays
one program that XLA partitions; BatchNorm's batch mean becomes a cross-device reduction on its
own, so BatchNorm sees the global batch and N devices compute what one device computes; the
same code runs multi-host (each process contributes its slice through
``make_array_from_process_local_data``) and checkpoints restore onto any device count. The
steps still accept ``axis_name`` for users who ``pmap`` them (see ``pmap_train_step``).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flax_sr import gan as gan_lib
from flax_sr import train as train_lib
from flax_sr.config import UserError

DATA_AXIS = 'data'


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over every device (all hosts), or over the first ``num_devices`` local ones."""
  devices = jax.devices()
  if num_devices is not None:
    if jax.process_count() > 1:
      raise UserError('--num_devices is for single-host runs; multi-host runs use every device')
    if num_devices > len(devices):
      raise UserError(f'--num_devices {num_devices} exceeds the {len(devices)} devices available')
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,),
              axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, what: str = '--batch_size') -> None:
  if global_batch % mesh.size:
    raise UserError(f'{what} {global_batch} is not divisible by the {mesh.size} devices; use a '
                    f'multiple of {mesh.size} (or --num_devices)')


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's part of a global batch -> global arrays split over the 'data' axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def put_replicated(tree, mesh: Mesh):
  return jax.device_put(tree, replicated(mesh))


def compile_train_step(mesh: Mesh, **step_kwargs):
  """``train_step`` jit-compiled over the mesh: state replicated and donated, batch split."""
  step = functools.partial(train_lib.train_step, **step_kwargs)
  return jax.jit(step, in_shardings=(replicated(mesh), batch_sharding(mesh)),
                 out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)


def compile_gan_train_step(mesh: Mesh, **step_kwargs):
  """``gan.gan_train_step`` compiled as ``compile_train_step``; the VGG weights (its third
  argument) replicated."""
  step = functools.partial(gan_lib.gan_train_step, **step_kwargs)
  return jax.jit(step, in_shardings=(replicated(mesh), batch_sharding(mesh), replicated(mesh)),
                 out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)


def _compile_with_replicated_extra(mesh: Mesh, function, extra):
  """``function(replicated_value, batch, extra)`` jitted over the mesh, with ``extra`` (a
  pytree or None) replicated once here: (value, batch) -> replicated result."""
  compiled = jax.jit(function, in_shardings=(replicated(mesh), batch_sharding(mesh),
                                             replicated(mesh)), out_shardings=replicated(mesh))
  on_devices = put_replicated(extra, mesh) if extra is not None else None
  return lambda value, batch: compiled(value, batch, on_devices)


def compile_eval_step(mesh: Mesh, lpips_weights=None, **step_kwargs):
  """``eval_step`` over the mesh: (state, batch) -> sums. ``lpips_weights`` (replicated once
  here) add the LPIPS of every row."""
  def step(state, batch, lpips_on_devices):
    return train_lib.eval_step(state, batch, lpips_weights=lpips_on_devices, **step_kwargs)
  return _compile_with_replicated_extra(mesh, step, lpips_weights)


def compile_eval_sums(mesh: Mesh, model, lpips_weights=None, **kwargs):
  """``eval_sums`` for a fixed model, compiled over the mesh: (variables, batch) -> sums.
  ``lpips_weights`` (replicated once here) add the LPIPS of every row."""
  def evaluate(variables, batch, lpips_on_devices):
    return train_lib.eval_sums(model, variables, batch, lpips_weights=lpips_on_devices,
                               **kwargs)
  return _compile_with_replicated_extra(mesh, evaluate, lpips_weights)


def pmap_train_step(axis_name: str = 'batch', **step_kwargs):
  """The flax imagenet pattern: state unmapped in and out, batch mapped over local devices
  (``batch['hr']`` shaped (devices, per_device_batch, H, W, 3)); metrics stay per device."""
  step = functools.partial(train_lib.train_step, axis_name=axis_name, **step_kwargs)
  return jax.pmap(step, axis_name=axis_name, in_axes=(None, 0), out_axes=(None, 0))


def split_for_pmap(batch: dict[str, np.ndarray], num_devices: int) -> dict[str, np.ndarray]:
  """(B, ...) -> (num_devices, B / num_devices, ...), the layout ``pmap`` maps over."""
  def split(x):
    if x.shape[0] % num_devices:
      raise UserError(f'batch of {x.shape[0]} is not divisible by the {num_devices} devices')
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])
  return {k: split(np.asarray(v)) for k, v in batch.items()}
