"""The entry points' huge-page malloc re-exec (flax_sr.host_allocator)."""

import os
import subprocess
import sys

import pytest

from flax_sr import host_allocator


def test_environment_adds_the_tunable_once():
  base = {'PATH': '/bin', 'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}
  env = host_allocator.environment_with_hugepages(base)
  if not host_allocator.hugepages_available():
    assert env is None
    return
  assert env['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  assert env['PATH'] == '/bin'
  # Already set, or switched off: nothing to do (no re-exec loop).
  assert host_allocator.environment_with_hugepages(env) is None
  assert host_allocator.environment_with_hugepages({**base, 'FLAX_SR_HUGEPAGES': '0'}) is None


def test_tunable_set_and_removed_keeping_others():
  on = host_allocator.set_hugepage_tunable({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, True)
  assert on['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  off = host_allocator.set_hugepage_tunable(on, False)
  assert off['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2'
  assert 'GLIBC_TUNABLES' not in host_allocator.set_hugepage_tunable(
      {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}, False)


@pytest.mark.skipif(not host_allocator.hugepages_available(),
                    reason='needs Linux, glibc >= 2.35 and transparent huge pages')
def test_entry_point_reexecutes_with_huge_pages(tmp_path):
  script = tmp_path / 'entry.py'
  script.write_text('import os, sys\n'
                    'from flax_sr import host_allocator\n'
                    'print("start", flush=True)\n'
                    'host_allocator.reexec_with_hugepages()\n'
                    'print(os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])\n')
  env = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES', 'FLAX_SR_HUGEPAGES')}
  result = subprocess.run([sys.executable, str(script), '--flag', 'value'], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
  # Printed twice: before the re-exec and in the re-executed process, which keeps the argv.
  assert result.stdout.count('start') == 2
  assert result.stdout.strip().endswith("glibc.malloc.hugetlb=1 ['--flag', 'value']")
