"""The entry points' fast-malloc re-exec (flax_sr.host_allocator)."""

import os
import subprocess
import sys

import pytest

from flax_sr import host_allocator

TUNABLES = host_allocator.fast_malloc_tunables()
needs_tunables = pytest.mark.skipif(not TUNABLES, reason='needs Linux with glibc >= 2.26')


def clean_environment():
  return {k: v for k, v in os.environ.items()
          if k not in ('GLIBC_TUNABLES', host_allocator.OFF_SWITCH, 'JAX_PLATFORMS')}


@needs_tunables
def test_no_reexec_where_jax_runs_on_an_accelerator():
  base = {'PATH': '/bin'}
  assert host_allocator.environment_with_fast_malloc({**base, 'JAX_PLATFORMS': 'cuda'}) is None
  assert host_allocator.environment_with_fast_malloc({**base, 'JAX_PLATFORMS': 'tpu,cpu'}) is None
  assert host_allocator.environment_with_fast_malloc({**base, 'JAX_PLATFORMS': 'cpu'}) is not None


@needs_tunables
def test_environment_adds_each_tunable_once_and_keeps_the_users_values():
  base = {'PATH': '/bin', 'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.rtld.optional_static_tls=1'}
  env = host_allocator.environment_with_fast_malloc(base)
  tunables = env['GLIBC_TUNABLES'].split(':')
  assert tunables[:2] == ['glibc.malloc.arena_max=2', 'glibc.rtld.optional_static_tls=1']
  assert 'glibc.malloc.arena_max=1' not in tunables  # the user's value wins
  assert set(tunables) == set(tunables[:2]) | {t for t in TUNABLES if 'arena_max' not in t}
  assert env['PATH'] == '/bin'
  assert ('glibc.malloc.hugetlb=1' in tunables) == host_allocator.hugepages_available()
  # Already set, or switched off: nothing to do (no re-exec loop).
  assert host_allocator.environment_with_fast_malloc(
      {'GLIBC_TUNABLES': env['GLIBC_TUNABLES']}) is None
  assert host_allocator.environment_with_fast_malloc(
      {**base, host_allocator.OFF_SWITCH: '0'}) is None


def test_tunables_set_and_removed_keeping_others():
  ours = ('glibc.malloc.hugetlb=1', 'glibc.malloc.mmap_max=0')
  on = host_allocator.set_malloc_tunables({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, ours,
                                          True)
  assert on['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:' + ':'.join(ours)
  off = host_allocator.set_malloc_tunables(on, ours, False)
  assert off['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2'
  assert 'GLIBC_TUNABLES' not in host_allocator.set_malloc_tunables(
      {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}, ours, False)


@needs_tunables
def test_entry_point_reexecutes_with_the_tunables(tmp_path):
  script = tmp_path / 'entry.py'
  script.write_text('import os, sys\n'
                    'from flax_sr import host_allocator\n'
                    'print("start", flush=True)\n'
                    'host_allocator.reexec_with_fast_malloc()\n'
                    'print(os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])\n')
  result = subprocess.run([sys.executable, str(script), '--flag', 'value'],
                          env=clean_environment(), capture_output=True, text=True, timeout=120,
                          check=True)
  # Printed twice: before the re-exec and in the re-executed process, which keeps the argv.
  assert result.stdout.count('start') == 2
  # The re-exec says so, once, and names the off switch.
  assert result.stderr.count('restarting once with glibc malloc tunables') == 1
  assert 'FLAX_SR_FAST_MALLOC=0' in result.stderr
  assert result.stdout.strip().endswith(f"{':'.join(TUNABLES)} ['--flag', 'value']")


# Allocates, touches and frees a 256 MiB buffer five times, like one XLA step after another,
# and prints the page faults of the last four rounds.
FAULTS_PER_ROUND = '''
import resource
import numpy as np
def faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(2**26, np.float32)
before = faults()
for _ in range(4):
  np.ones(2**26, np.float32)
print((faults() - before) / 4)
'''


@needs_tunables
def test_freed_memory_is_reused_without_page_faults():
  def faults_per_round(environ):
    result = subprocess.run([sys.executable, '-c', FAULTS_PER_ROUND], env=environ,
                            capture_output=True, text=True, timeout=120, check=True)
    return float(result.stdout)

  default = faults_per_round(clean_environment())
  fast = faults_per_round(host_allocator.set_malloc_tunables(clean_environment(), TUNABLES, True))
  # glibc's default maps 256 MiB afresh each round: 65,536 faults with 4 KiB pages, hundreds
  # with transparent huge pages (640 on the development machine). Retained memory: none.
  assert default >= 100
  assert fast <= 10
