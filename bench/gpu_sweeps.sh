#!/usr/bin/env bash
# The CUDA checks and the model sweeps, as one script for a GPU machine (needs torch, numpy,
# pandas, scikit-learn, pyyaml, tqdm; not av, opensmile, gensim or dvc: features come as stores).
#
#   STORES=.gpu OUT=/tmp/out JOBS=14 LIMIT=480 bash bench/gpu_sweeps.sh
#
# TASKS=FILE runs that file's task lines instead of the built-in list (format below);
# TESTS="pytest args" picks the tests (default: tests/test_model.py tests/test_protocol.py).
#
# STORES holds demo.npz, mosi.npz, iemocap/{kim_cnn,sentence_transformer}.npz and
# meld/{kim_cnn,sentence_transformer}.npz (made by bench/iemocap_text.py and bench/meld_text.py
# with --seeds 0 --stores DIR). Each (store, variant, seed) is one task; JOBS tasks share the GPU
# at a time, and whatever has finished after LIMIT seconds is kept: $OUT/runs.tar.gz holds one
# log per task, whose last line is the JSON of bench/sweep.py.
set -u
STORES=${STORES:-.gpu}; OUT=${OUT:-/tmp/gpu_out}; JOBS=${JOBS:-14}; LIMIT=${LIMIT:-480}
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT/runs"
nvidia-smi -L > "$OUT/device.txt" 2>&1

# 1. CUDA: the model and protocol tests (the CUDA test included), and seconds per epoch.
python -m pytest -q -p no:cacheprovider ${TESTS:-tests/test_model.py tests/test_protocol.py} > "$OUT/runs/pytest.log" 2>&1 &
{ python bench/epoch_time.py --device cuda --epochs 3; python bench/epoch_time.py --device cuda --epochs 3 --amp
  python bench/epoch_time.py --device cpu --epochs 1; } > "$OUT/runs/epoch_time.log" 2>&1 &

# 2. The sweeps: one line per task, "store|name|model json|train json|seed", the quick stores first.
T='"modalities": ["text"]'
{
for seed in 0 1 2 3 4; do
  for v in 'dimmn|{}' 'dimmn_all|{"window": "all"}' 'dimmn_both|{"window": "all", "direction": "both"}' \
           'bclstm|{"mode": "bclstm", "fusion": "concat"}' 'utterance|{"mode": "utterance", "fusion": "concat"}'; do
    echo "demo.npz|${v%%|*}|${v#*|}|{}|$seed"; done
  for v in 'dimmn|{"views": "TA+VA", "window": "all", "dropout": 0.5}' \
           'dimmn_both|{"views": "TA+VA", "window": "all", "direction": "both", "dropout": 0.5}' \
           'bclstm|{"mode": "bclstm", "fusion": "concat", "dropout": 0.5}' \
           'utterance|{"mode": "utterance", "fusion": "concat", "dropout": 0.5}'; do
    echo "mosi.npz|${v%%|*}|${v#*|}|{\"batch_size\": 4}|$seed"; done
done
for data in iemocap/kim_cnn iemocap/sentence_transformer meld/kim_cnn meld/sentence_transformer; do
  for seed in 0 1 2 3 4; do
    for v in "dimmn|{$T, \"window\": \"all\"}" "dimmn_past|{$T}" \
             "dimmn_both|{$T, \"window\": \"all\", \"direction\": \"both\"}" \
             "dimmn_both_small|{$T, \"window\": \"all\", \"direction\": \"both\", \"K\": 3, \"L\": 2}" \
             "dimmn_both_gru|{$T, \"window\": \"all\", \"direction\": \"both\", \"context\": \"gru\"}" \
             "bclstm|{$T, \"mode\": \"bclstm\"}" "utterance|{$T, \"mode\": \"utterance\"}"; do
      echo "$data.npz|${v%%|*}|${v#*|}|{}|$seed"; done
  done
done
} > "$OUT/runs/tasks.txt"
[ -n "${TASKS:-}" ] && cp "$TASKS" "$OUT/runs/tasks.txt"

run_task() {   # one line of tasks.txt -> runs/<store>__<name>__<seed>.log
  IFS='|' read -r store name model train seed <<< "$1"
  log="$OUT/runs/${store//\//_}__${name}__${seed}.log"
  python bench/sweep.py --store "$STORES/$store" --seed "$seed" --variant "$name" "$model" --train "$train" > "$log" 2>&1
}
export -f run_task; export OUT STORES
timeout "$LIMIT" xargs -d '\n' -P "$JOBS" -I{} bash -c 'run_task "$@"' _ {} < "$OUT/runs/tasks.txt"
pkill -f bench/sweep.py; wait
tar -czf "$OUT/runs.tar.gz" -C "$OUT" runs && rm -rf "$OUT/runs"
