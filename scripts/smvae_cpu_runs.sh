#!/usr/bin/env bash
# The SMVAE runs behind docs/results.md: both datasets, semi-supervised with 100
# labelled tweets for seeds 0, 1, 2 and supervised on the full training set, with the
# CPU preset. Two runs at a time (one torch thread each); wall time and peak memory
# of each run come from /usr/bin/time -v and land beside its model directory.
# Usage: MNER_DATA_DIR=... scripts/smvae_cpu_runs.sh [OUT_DIR]
set -euo pipefail
out="${1:-models/smvae-cpu}"
mkdir -p "$out"
jobs=()
for dataset in twitter2017 twitter2015; do
  for seed in 0 1 2; do
    jobs+=("$dataset-semi-seed$seed dataset=$dataset setting=semi-supervised labelled=100 labelled_seed=$seed seed=$seed")
  done
  jobs+=("$dataset-supervised dataset=$dataset setting=supervised labelled=all training.epochs=10")
done
run_one() {
  local name="$1"; shift
  /usr/bin/time -v -o "$out/$name.time" \
    mner train configs/train/smvae_cpu.yaml "$@" --out "$out/$name" > "$out/$name.log" 2>&1
}
for job in "${jobs[@]}"; do
  read -r name overrides <<< "$job"
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do sleep 5; done
  # shellcheck disable=SC2086
  run_one "$name" $overrides &
done
wait
