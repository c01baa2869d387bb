"""A faster host malloc for the command-line tools (1.5x, then up to 1.25x more, training on CPU).

XLA:CPU allocates each step's buffers (im2col patches, activations, gradients: hundreds of MB
for the reference model at batch 64) with glibc ``malloc`` and frees them at the end of the
step. With glibc's defaults every buffer above 32 MiB is a fresh ``mmap``, returned to the
kernel on ``free``, so each step faults its memory in again and the kernel zeroes it page by
page. Two sets of glibc tunables remove that (measured in experiments/RESULTS.md, section 4):

* huge pages (``glibc.malloc.hugetlb=1``, glibc >= 2.35, transparent huge pages not
  ``never``): one fault per 2 MiB instead of per 4 KiB. 225,000 faults per step of the
  reference model became about 1,300; the step time dropped by a third.
* retention (``mmap_max=0``, a huge ``trim_threshold``, ``arena_max=1``): large buffers come
  from the heap, and freed memory stays in the process for the next step instead of going
  back to the kernel, which would zero it again. 1,300 faults per step became about 30; the
  reference model's early-placement step got 1.15-1.25x faster. The cost: the process keeps
  its peak heap until it exits, which a training or evaluation command does anyway.

A tunable is read once when a process starts, so the command-line entry points call
``reexec_with_fast_malloc()`` first: it re-executes the same command with the tunables set,
once. Library use (importing flax_sr) never does this. ``FLAX_SR_FAST_MALLOC=0`` turns it off;
tunables already in ``GLIBC_TUNABLES`` keep their values.
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys

OFF_SWITCH = 'FLAX_SR_FAST_MALLOC'
HUGE_PAGES = ('glibc.malloc.hugetlb=1',)
RETENTION = (
    'glibc.malloc.mmap_max=0',  # large blocks from the heap, not from fresh mmaps
    'glibc.malloc.trim_threshold=68719476736',  # 64 GiB: never give freed heap back
    # One arena: a worker thread's own arena would serve blocks over its 64 MiB heap limit
    # with mmap again. malloc is not hot in XLA (few large blocks per step), so no contention.
    'glibc.malloc.arena_max=1',
)
THP_SETTING = pathlib.Path('/sys/kernel/mm/transparent_hugepage/enabled')


def _glibc_version() -> tuple[int, int] | None:
  libc, version = platform.libc_ver()
  try:
    return tuple(int(p) for p in version.split('.')[:2]) if libc == 'glibc' else None
  except ValueError:
    return None


def hugepages_available() -> bool:
  """Linux with glibc >= 2.35 (which has the tunable) and huge pages not disabled."""
  version = _glibc_version()
  if sys.platform != 'linux' or version is None or version < (2, 35):
    return False
  try:
    return '[never]' not in THP_SETTING.read_text()
  except OSError:
    return False


def fast_malloc_tunables() -> tuple[str, ...]:
  """The tunables this machine's glibc supports (none off glibc; tunables exist since 2.26)."""
  version = _glibc_version()
  if sys.platform != 'linux' or version is None or version < (2, 26):
    return ()
  return (HUGE_PAGES if hugepages_available() else ()) + RETENTION


def _key(tunable: str) -> str:
  return tunable.split('=', 1)[0]


def set_malloc_tunables(environ: dict[str, str], tunables: tuple[str, ...],
                        enabled: bool) -> dict[str, str]:
  """A copy of ``environ`` whose GLIBC_TUNABLES has ``tunables`` (``enabled``) or none of their
  keys; other tunables are kept, and so are values already set for these keys when enabling."""
  ours = {_key(t) for t in tunables}
  current = [t for t in environ.get('GLIBC_TUNABLES', '').split(':') if t]
  if enabled:
    present = {_key(t) for t in current}
    merged = current + [t for t in tunables if _key(t) not in present]
  else:
    merged = [t for t in current if _key(t) not in ours]
  environ = {k: v for k, v in environ.items() if k != 'GLIBC_TUNABLES'}
  return {**environ, 'GLIBC_TUNABLES': ':'.join(merged)} if merged else environ


# Distributions that give JAX an accelerator backend (name prefixes, normalised to '-').
ACCELERATOR_PLUGINS = ('jax-cuda', 'jax-rocm', 'libtpu', 'jax-metal')


def accelerator_expected(environ: dict[str, str]) -> bool:
  """Whether JAX will run on an accelerator, decided without importing JAX: ``JAX_PLATFORMS``
  when set, else whether an accelerator plugin (CUDA, ROCm, TPU, Metal) is installed. The
  tunables help XLA:CPU's step buffers only."""
  platforms = environ.get('JAX_PLATFORMS', '').strip()
  if platforms:
    return platforms.split(',')[0].strip().lower() != 'cpu'
  from importlib import metadata
  names = {(d.metadata['Name'] or '').lower().replace('_', '-') for d in metadata.distributions()}
  return any(name.startswith(ACCELERATOR_PLUGINS) for name in names)


def environment_with_fast_malloc(environ: dict[str, str]) -> dict[str, str] | None:
  """The environment to re-execute with, or None when nothing is to be done (switched off,
  already set, not glibc, or JAX will run on an accelerator)."""
  if environ.get(OFF_SWITCH, '1') == '0':
    return None
  tunables = fast_malloc_tunables()
  present = {_key(t) for t in environ.get('GLIBC_TUNABLES', '').split(':') if t}
  if all(_key(t) in present for t in tunables) or accelerator_expected(environ):
    return None
  # The off switch in the child also guards against a re-exec loop.
  return {**set_malloc_tunables(environ, tunables, True), OFF_SWITCH: '0'}


def reexec_with_fast_malloc() -> None:
  """Re-executes this command (``sys.orig_argv``) with the fast malloc, saying so in one line
  on stderr; returns if not needed or not possible. Call it first in a ``__main__`` block,
  before anything heavy is imported. The same effect without the re-exec: set
  ``GLIBC_TUNABLES`` to ``':'.join(fast_malloc_tunables())`` yourself."""
  environ = environment_with_fast_malloc(dict(os.environ))
  if environ is None or not getattr(sys, 'orig_argv', None):
    return
  sys.stdout.flush()
  print(f'flax_sr: restarting once with glibc malloc tunables for XLA:CPU '
        f'({OFF_SWITCH}=0 turns this off)', file=sys.stderr, flush=True)
  try:
    os.execve(sys.executable, [sys.executable] + list(sys.orig_argv[1:]), environ)
  except OSError:
    return  # keep running with the default allocator
