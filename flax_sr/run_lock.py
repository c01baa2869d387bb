"""One writer per workdir: a lock file naming the training process that owns a run.

``WORKDIR/.lock`` holds the owner's pid, host and start time. A second training process on the
same workdir refuses in one line naming the owner; a lock whose process is gone (a SIGKILL, a
crash) is taken over. Readers (evaluate, predict, benchmark) take no lock: they read the
latest complete checkpoint and never disturb the writer.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import time

from flax_sr.config import UserError

LOCK_FILE = '.lock'


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user
    return True
  return True


class RunLock:
  """``with RunLock(workdir):`` holds the workdir's lock for the block (a no-op when not
  ``enabled``, e.g. on processes other than 0 of a multi-host run)."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.path = pathlib.Path(workdir) / LOCK_FILE
    self.enabled = enabled
    self._held = False

  def owner(self) -> dict | None:
    try:
      return json.loads(self.path.read_text())
    except (OSError, ValueError):
      return None

  def _refusal(self, owner: dict, host: str) -> UserError | None:
    pid, owner_host = owner.get('pid'), owner.get('host')
    alive = owner_host != host or (isinstance(pid, int) and _process_alive(pid))
    if not (owner and alive) or (pid == os.getpid() and owner_host == host):
      return None
    started = time.strftime('%Y-%m-%d %H:%M', time.localtime(owner.get('since', 0)))
    where = '' if owner_host == host else f' (delete {self.path} if that process is gone)'
    return UserError(f'{self.path.parent} is in use by training process {pid} on '
                     f'{owner_host} since {started}; wait for it to end, or use another '
                     f'--workdir{where}')

  def check_free(self):
    """Raises the refusal ``acquire`` would, without taking the lock: lets a command stop
    before minutes of data loading when the workdir is busy."""
    if self.enabled and self.path.exists():
      refusal = self._refusal(self.owner() or {}, socket.gethostname())
      if refusal:
        raise refusal

  def acquire(self):
    if not self.enabled:
      return
    host = socket.gethostname()
    record = json.dumps({'pid': os.getpid(), 'host': host, 'since': time.time()})
    for _ in range(2):
      try:
        descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        refusal = self._refusal(self.owner() or {}, host)
        if refusal:
          raise refusal
        self.path.unlink(missing_ok=True)  # its process is gone: a stale lock
        continue
      with os.fdopen(descriptor, 'w') as lock:
        lock.write(record)
      self._held = True
      return
    raise UserError(f'could not take the lock {self.path}; another process is starting there')

  def release(self):
    if self._held and (self.owner() or {}).get('pid') == os.getpid():
      self.path.unlink(missing_ok=True)
    self._held = False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()
