"""Model size and cost as SR papers tabulate them: parameters, and multiply-adds of one forward
pass for a 1280x720 output (the lightweight-SR convention of CARN, IMDN and their successors).

Multiply-adds are counted from the forward pass's jaxpr with XLA's own convolutions (so the
count is the direct convolution's, whatever fast algorithm runs): each convolution contributes
(output elements) x (kernel height x width x input channels per group), each matrix product of
two computed or learned operands (dense layers, attention) its output elements times the
contracted size. Products with a fixed matrix, such as the bicubic upscale of
``--global_residual`` (written as a product with a resize matrix), are interpolation rather
than a layer and are not counted, nor are elementwise operations (bias, activations,
normalisation), as in those papers' tables.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

OUTPUT_720P = (720, 1280)  # (height, width)


def count_parameters(params: Any) -> int:
  """Learned parameters (BatchNorm statistics and other non-learned state excluded)."""
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def lr_size_for_output(scale: int, output_hw: tuple[int, int] = OUTPUT_720P) -> tuple[int, int]:
  """The LR input size whose x``scale`` output is ``output_hw``, rounded to whole pixels (x3:
  240x427 for 720x1281, the convention's rounding)."""
  return tuple(int(round(n / scale)) for n in output_hw)


def _subjaxprs(params: dict):
  for value in params.values():
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr, True
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v, False


def _multiply_adds(jaxpr, const_inputs: list[bool]) -> int:
  """Multiply-adds of ``jaxpr``; ``const_inputs`` marks inputs that are fixed constants."""
  const = {var for var, is_const in zip(jaxpr.invars, const_inputs) if is_const}
  const.update(jaxpr.constvars)

  def is_const(atom):
    return isinstance(atom, jax.extend.core.Literal) or atom in const

  total = 0
  for eqn in jaxpr.eqns:
    inputs_const = [is_const(a) for a in eqn.invars]
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      rhs = eqn.invars[1].aval.shape
      out_channels = rhs[eqn.params['dimension_numbers'].rhs_spec[0]]
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) // out_channels
    elif name == 'dot_general' and not any(inputs_const):
      (lhs_contract, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
    else:
      repeats = eqn.params.get('length', 1) if name == 'scan' else 1
      for sub, closed in _subjaxprs(eqn.params):
        flags = inputs_const[-len(sub.invars):] if sub.invars else []
        flags = [False] * (len(sub.invars) - len(flags)) + flags
        total += repeats * _multiply_adds(sub, flags)
    if all(inputs_const):
      const.update(eqn.outvars)
  return total


def count_multiply_adds(model, variables: Any, lr_hw: tuple[int, int]) -> int:
  """Multiply-adds of one forward pass of ``model`` on one (1, h, w, 3) LR image (see the
  module docstring for what is counted). Nothing is computed: the pass is only traced."""
  if hasattr(model, 'conv_impl'):
    model = model.clone(conv_impl='xla')
  image = jax.ShapeDtypeStruct((1, *lr_hw, 3), jnp.float32)
  closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, image)
  num_inputs = len(closed.jaxpr.invars)
  return _multiply_adds(closed.jaxpr, [False] * num_inputs)
