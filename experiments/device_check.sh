#!/usr/bin/env bash
# The GPU checks, run through the device tool on a lent H100/H200 (no package registry there:
# the image's jax/flax/optax/orbax/scikit-image are used, with this checkout on PYTHONPATH).
#   bash experiments/device_check.sh bench   # benchmark table, float32 and bfloat16
#   bash experiments/device_check.sh train   # T91 x2/x3/x4 pretrained models + a bf16 run
#   bash experiments/device_check.sh t91sweep  # T91 x3 recipes at the step counts that fit in
#                                              # 60 minutes on the 2-core CPU (recipe search)
# T91 and Set5 must be copied to .devdata/ (git-ignored) and carried.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi -L
python3 -c "import jax, flax, optax, orbax.checkpoint; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
case "$1" in
bench)
  python3 experiments/bench.py --dtype float32 bfloat16 --batch 64 2048 --steps 10 --warmup 2 \
    --output_json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench.log"
  ;;
train)
  export XLA_PYTHON_CLIENT_MEM_FRACTION=0.15
  # The recipe is the preset pretrained_xS (what trained the shipped weights).
  T91="--data_dir .devdata/T91 --eval_data_dir .devdata/Set5
       --num_train_steps ${STEPS:-16000} --train_minutes ${MINUTES:-3.5}"
  for s in 2 3 4; do
    python3 -m flax_sr.main --config pretrained_x$s $T91 --workdir /tmp/t91_x$s > "$OUT/t91_x$s.log" 2>&1 &
  done
  MP="--dataset sample --input_size 32 --global_residual --loss l1 --learning_rate 1e-3
      --batch_size 64 --num_train_steps 600 --eval_every 300 --log_every 100"
  python3 -m flax_sr.main $MP --dtype bfloat16 --workdir /tmp/bf16 > "$OUT/mp_bf16.log" 2>&1 &
  python3 -m flax_sr.main $MP --dtype float32 --workdir /tmp/fp32 > "$OUT/mp_fp32.log" 2>&1 &
  wait
  for s in 2 3 4; do
    python3 experiments/ship_pretrained.py /tmp/t91_x$s x$s --step best --output_dir /tmp/pretrained \
      --trained_with "MINUTES=${MINUTES:-3.5} STEPS=${STEPS:-16000} bash experiments/device_check.sh train ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
  done
  tar -C /tmp -cf "$OUT/pretrained.tar" pretrained
  tail -n 12 "$OUT"/*.log
  ;;
t91sweep)
  # Each run gets the number of steps the 2-core development CPU trains in about 60 minutes
  # for that width/depth/batch (measured there with bench.bench_train), so the GPU ranks the
  # recipes for the CPU run; the math is the same on both.
  export XLA_PYTHON_CLIENT_MEM_FRACTION=0.1
  BASE="--dataset folder --data_dir .devdata/T91 --eval_data_dir .devdata/Set5 --model edsr
        --input_size 32 --global_residual --loss l1 --lr_schedule cosine --warmup_steps 200
        --augment --patches_per_image 64 --eval_every 1000 --ema_decay 0.999 --log_every 1000"
  run() { name=$1; shift; python3 -m flax_sr.main $BASE "$@" --workdir /tmp/sweep_$name > "$OUT/sweep_$name.log" 2>&1 & }
  run f32b8_lr1e3   --features 32 --num_res_blocks 8  --batch_size 16 --learning_rate 1e-3 --num_train_steps 5800
  run f32b8_lr2e3   --features 32 --num_res_blocks 8  --batch_size 16 --learning_rate 2e-3 --num_train_steps 5800
  run f48b8_lr1e3   --features 48 --num_res_blocks 8  --batch_size 16 --learning_rate 1e-3 --num_train_steps 3200
  run f48b8_lr2e3   --features 48 --num_res_blocks 8  --batch_size 16 --learning_rate 2e-3 --num_train_steps 3200
  run f32b16_lr1e3  --features 32 --num_res_blocks 16 --batch_size 16 --learning_rate 1e-3 --num_train_steps 3500
  run f32b8_bs8     --features 32 --num_res_blocks 8  --batch_size 8  --learning_rate 1e-3 --num_train_steps 8900
  run f48b8_bs8     --features 48 --num_res_blocks 8  --batch_size 8  --learning_rate 1e-3 --num_train_steps 6900
  run f64b4_lr1e3   --features 64 --num_res_blocks 4  --batch_size 16 --learning_rate 1e-3 --num_train_steps 2900
  wait
  # tqdm ends its lines with \r: split them before picking the evaluation lines.
  for f in "$OUT"/sweep_*.log; do echo "== $f"; tr '\r' '\n' < "$f" | grep "eval on" | tail -n 3; done
  ;;
esac
