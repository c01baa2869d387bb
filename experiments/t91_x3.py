"""Experiment t91_x3: the preset flax_sr/configs/t91_x3.py (T91 -> Set5 x3 within 60 CPU
minutes), trained and evaluated.

    python experiments/t91_x3.py --workdir runs/t91_x3 --data_dir T91/ --eval_data_dir Set5/ \
        --train_minutes 60

``--data_dir`` and ``--eval_data_dir`` default to the copies in ../shared/data/sr beside a
developer checkout, when present.
"""
from common import SHARED_DATA, run

if __name__ == '__main__':
  set5 = SHARED_DATA / 'sr' / 'Set5'
  run('t91_x3', eval_data_dir=str(set5) if set5.exists() else None)
