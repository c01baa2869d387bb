"""Multi-host start-up: every process of a run joins ``jax.distributed`` before anything touches a
device.

With ``--coordinator_address HOST:PORT --num_processes N --process_id I`` the processes first
meet in a plain TCP rendezvous on that port, so that a process whose partners never come (a
typo in the address, a job step that did not start) ends with a one-line error after
``--distributed_timeout`` seconds. JAX's own start-up cannot do that: when it times out it ends
the process from C++ (exit code 134 and a stack dump). Once all N are there, process 0 closes
the rendezvous and JAX's coordination service takes the port over.

With ``--distributed`` (or ``FLAX_SR_DISTRIBUTED=1``) JAX finds the coordinator itself (SLURM,
TPU pods, ``JAX_COORDINATOR_ADDRESS``...), and its start-up is all there is.

When a process dies during training (killed, out of memory, its machine lost), the others
notice in their next collective (gloo's connection to it breaks) and stop with one line naming
the last complete checkpoint, exit code ``LOST_PROCESS_EXIT_CODE``, without waiting for the dead
one. Where no collective notices (a machine gone silent), ``--distributed_timeout`` is also
JAX's heartbeat timeout: the coordination service ends the others after about that many seconds
("...This most likely indicates that another task died", exit code 134). Either way none waits
forever.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

from flax_sr.errors import UserError

_HELLO = b'flax_sr-rendezvous'
# The exit code of a process whose partner died: not 2 (a usage error), so a scheduler can
# restart the whole run, which resumes from the last checkpoint.
LOST_PROCESS_EXIT_CODE = 3


def _split_address(address: str) -> tuple[str, int]:
  host, _, port = address.rpartition(':')
  return host.strip('[]'), int(port)


def _serve_rendezvous(port: int, num_processes: int, timeout: float) -> None:
  """Process 0: wait for processes 1..N-1 to say hello, then release them all at once."""
  deadline = time.monotonic() + timeout
  joined: dict[int, socket.socket] = {}
  with socket.create_server(('', port), reuse_port=hasattr(socket, 'SO_REUSEPORT')) as server:
    try:
      while len(joined) < num_processes - 1:
        left = deadline - time.monotonic()
        if left <= 0:
          missing = sorted(set(range(1, num_processes)) - set(joined))
          raise UserError(
              f'multi-host start-up failed: {len(joined) + 1} of {num_processes} processes '
              f'joined within --distributed_timeout {timeout:g} s (missing process id(s) '
              f'{", ".join(map(str, missing[:8]))}{"..." if len(missing) > 8 else ""}); start '
              f'every process with --coordinator_address pointing at this one (port {port})')
        server.settimeout(min(left, 1.0))
        try:
          connection, _ = server.accept()
        except socket.timeout:
          continue
        connection.settimeout(5.0)
        try:
          message = connection.recv(64).decode(errors='replace').split()
        except OSError:
          connection.close()
          continue
        if len(message) == 2 and message[0] == _HELLO.decode() and message[1].isdigit():
          joined.setdefault(int(message[1]), connection)
        else:
          connection.close()
      for connection in joined.values():
        connection.sendall(b'go')
    finally:
      for connection in joined.values():
        connection.close()


def _join_rendezvous(host: str, port: int, process_id: int, timeout: float) -> None:
  """Processes 1..N-1: reach process 0 (it may start later) and wait for everyone."""
  deadline = time.monotonic() + timeout
  while True:
    left = deadline - time.monotonic()
    if left <= 0:
      raise UserError(f'multi-host start-up failed: the coordinator (process 0) at {host}:{port} '
                      f'did not answer within --distributed_timeout {timeout:g} s; start process '
                      f'0 with the same --coordinator_address and --num_processes')
    try:
      with socket.create_connection((host, port), timeout=min(left, 5.0)) as connection:
        connection.sendall(_HELLO + f' {process_id}'.encode())
        connection.settimeout(max(deadline - time.monotonic(), 0.1))
        if connection.recv(2) == b'go':
          return
    except (socket.timeout, TimeoutError):
      continue
    except OSError:
      pass  # not listening yet (or the rendezvous ended for a run that is not ours)
    time.sleep(0.2)


def initialize(config) -> None:
  """Joins the run's processes (see the module docstring); nothing for a single-host run."""
  import jax
  explicit = config.coordinator_address is not None
  if not (explicit or config.distributed or os.environ.get('FLAX_SR_DISTRIBUTED') == '1'):
    return
  if jax.distributed.is_initialized():
    return
  # CPU processes exchange collectives through gloo (accelerators use their own).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = {}
  if explicit:
    host, port = _split_address(config.coordinator_address)
    logging.info('Process %d of %d: meeting the others at %s (up to %d s)', config.process_id,
                 config.num_processes, config.coordinator_address, config.distributed_timeout)
    if config.num_processes > 1:
      if config.process_id == 0:
        _serve_rendezvous(port, config.num_processes, config.distributed_timeout)
      else:
        _join_rendezvous(host, port, config.process_id, config.distributed_timeout)
    kwargs = dict(coordinator_address=config.coordinator_address,
                  num_processes=config.num_processes, process_id=config.process_id)
  jax.distributed.initialize(**kwargs, initialization_timeout=config.distributed_timeout,
                             heartbeat_timeout_seconds=config.distributed_timeout)


def is_lost_process_error(error: BaseException) -> bool:
  """Whether a JAX runtime error in a multi-process run says a partner process is gone."""
  import jax
  if jax.process_count() < 2:
    return False
  text = str(error).lower()
  return any(sign in text for sign in ('gloo', 'connection reset', 'connection closed',
                                       'socket closed', 'heartbeat', 'unavailable'))


def exit_for_lost_process(error: BaseException, last_checkpoint: int | None) -> None:
  """Ends this process at once with one line: the cleanup a normal exit does (Orbax's and
  JAX's shutdown barriers) would wait for the dead process until the heartbeat timeout."""
  import jax
  first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
  kept = (f'the last complete checkpoint is step {last_checkpoint}' if last_checkpoint
          else 'no checkpoint was saved yet')
  print(f'error: process {jax.process_index()} lost contact with another process of this '
        f'{jax.process_count()}-process run (it probably died: {first_line}); {kept}; start '
        f'every process again with the same command to resume', file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(LOST_PROCESS_EXIT_CODE)
