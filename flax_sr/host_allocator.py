"""Transparent huge pages for the host allocator (a 1.5x training speed-up on CPU).

XLA:CPU allocates its per-step buffers (im2col patches, activations, gradients: hundreds of MB
for the reference model at batch 64) with glibc ``malloc``, which serves them from fresh
``mmap``s. With the kernel's transparent huge pages in ``madvise`` mode (the usual default)
every step then pays one page fault per 4 KiB touched: measured on the 2-core development
machine, about 225,000 faults per training step of the reference model. glibc's
``glibc.malloc.hugetlb=1`` tunable makes malloc ask for huge pages, which cuts the faults 35x
and the step time by a third (experiments/RESULTS.md, section 4).

A tunable is read once when a process starts, so the command-line entry points call
``reexec_with_hugepages()`` first: it re-executes the same command with the tunable set, once.
Library use (importing flax_sr) never does this. ``FLAX_SR_HUGEPAGES=0`` turns it off.
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
THP_SETTING = pathlib.Path('/sys/kernel/mm/transparent_hugepage/enabled')


def hugepages_available() -> bool:
  """Linux with glibc >= 2.35 (which has the tunable) and huge pages not disabled."""
  if sys.platform != 'linux':
    return False
  libc, version = platform.libc_ver()
  try:
    if libc != 'glibc' or tuple(int(p) for p in version.split('.')[:2]) < (2, 35):
      return False
    return '[never]' not in THP_SETTING.read_text()
  except (OSError, ValueError):
    return False


def set_hugepage_tunable(environ: dict[str, str], enabled: bool) -> dict[str, str]:
  """A copy of ``environ`` whose GLIBC_TUNABLES has the huge-page tunable (``enabled``) or not;
  other tunables are kept."""
  kept = [t for t in environ.get('GLIBC_TUNABLES', '').split(':')
          if t and not t.startswith('glibc.malloc.hugetlb')]
  tunables = ':'.join(kept + [TUNABLE] if enabled else kept)
  environ = {k: v for k, v in environ.items() if k != 'GLIBC_TUNABLES'}
  return {**environ, 'GLIBC_TUNABLES': tunables} if tunables else environ


def environment_with_hugepages(environ: dict[str, str]) -> dict[str, str] | None:
  """The environment to re-execute with, or None when nothing is to be done."""
  if environ.get('FLAX_SR_HUGEPAGES', '1') == '0' or 'glibc.malloc.hugetlb' in environ.get(
      'GLIBC_TUNABLES', ''):
    return None
  if not hugepages_available():
    return None
  # FLAX_SR_HUGEPAGES=0 in the child also guards against a loop should the tunable be dropped.
  return {**set_hugepage_tunable(environ, True), 'FLAX_SR_HUGEPAGES': '0'}


def reexec_with_hugepages() -> None:
  """Re-executes this command (``sys.orig_argv``) with huge-page malloc; returns if not needed
  or not possible. Call it first in a ``__main__`` block, before anything heavy is imported."""
  environ = environment_with_hugepages(dict(os.environ))
  if environ is None or not getattr(sys, 'orig_argv', None):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, [sys.executable] + list(sys.orig_argv[1:]), environ)
  except OSError:
    return  # keep running with the default allocator
