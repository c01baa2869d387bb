"""Experiment sr291_x3: the preset flax_sr/configs/sr291_x3.py (T91 + BSD200 -> Set5 x3 within
60 CPU minutes), trained and evaluated.

    python experiments/sr291_x3.py --workdir runs/sr291_x3 --data_dir T91/,BSD200/ \
        --eval_data_dir Set5/ --train_minutes 60

``--data_dir`` (both folders, comma-separated) and ``--eval_data_dir`` default to the copies in
../shared/data/sr beside a developer checkout, when present.
"""
from common import SHARED_DATA, run

if __name__ == '__main__':
  sr = SHARED_DATA / 'sr'
  folders = [sr / 'T91', sr / 'BSD200']
  run('sr291_x3', eval_data_dir=str(sr / 'Set5') if (sr / 'Set5').exists() else None,
      data_dir=','.join(map(str, folders)) if all(f.exists() for f in folders) else None)
