#!/usr/bin/env bash
# The GPU figures of docs/performance.md ("GPU speed"), in one device call on one H200:
#   bash bench/h200_issue9.sh [evaluate|ahead|suiteahead|preload|edges|throughput|guards|suite|edits|digest|peer64|peer200|ray ...]
#   (default: the first five; peer* need the invarlock wheel, ray needs Ray, on the path)
# Writes every figure under $OUT (or /tmp/ep-out): evaluate timings + /usr/bin/time output,
# eval_throughput, guards per scenario and the subset suite on the Mistral-7B shape.
set -u
OUT=${OUT:-/tmp/ep-out}
W=/tmp/ep-work
mkdir -p "$OUT" "$W"
export TOKENIZERS_PARALLELISM=false EDITPROOF_CACHE=$W/cache
parts=${*:-evaluate throughput guards suite edits}
CFG=$(cd bench && python3 -c "from _models import config_dir; print(config_dir('mistral-7b', '$W'))" | tail -1)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
git log -1 --format=%h 2>/dev/null | tee "$OUT/commit.txt"
for part in $parts; do
  start=$(date +%s.%N)
  case $part in
    evaluate)
      # 64+64 three times (the later ones find the token cache and the tokenizer's facts),
      # then 200+200; then 64+64 without the CUDA start beside the imports and without the
      # fast exit (64-off), and 64+64 through transformers' forward (64-t), for their costs.
      rm -rf "$W"/ev*
      for run in 64-a 64-b 64-c 200-a 64-off 64-t; do
        n=${run%-*}
        forward=auto; [ "$run" = 64-t ] && forward=transformers
        edges=1; [ "$run" = 64-off ] && edges=0
        EDITPROOF_PRELOAD=$edges EDITPROOF_FAST_EXIT=$edges \
        /usr/bin/time -v python3 -m editproof evaluate --baseline "$CFG" --forward $forward \
          --edit quant_rtn:8:32:attn --windows "$n" --seq-len 512 --out "$W/ev$run" --quiet \
          > "$OUT/ev$run.stdout" 2> "$OUT/ev$run.time"
        cp "$W/ev$run/timings.json" "$OUT/ev$run.timings.json"
        grep -E "Elapsed|Maximum resident" "$OUT/ev$run.time"
        python3 -c "import json,sys; t=json.load(open('$OUT/ev$run.timings.json')); print('$run', t['total'], sorted(t['keys'].items(), key=lambda kv: -kv[1])[:8], 'unattributed', t['unattributed'], 'overlapped', t['overlapped'])"
      done
      python3 bench/forward_compare.py "$W/ev64-b/evaluation.report.json" \
        "$W/ev64-t/evaluation.report.json" | tee "$OUT/forward_compare.txt" ;;
    ahead)
      # Modules compiled ahead by worker processes (src/editproof/_compile_ahead.py; on this
      # host Python neither finds nor writes bytecode): a first run that writes the list,
      # then 64+64 with it on and off in turn (five on, four off), then 200+200 on.
      rm -rf "$EDITPROOF_CACHE/compile-ahead"
      for run in 64-first 64-on1 64-off1 64-on2 64-off2 64-on3 64-off3 64-on4 64-off4 \
          64-on5 200-on; do
        n=${run%%-*}
        ca=1; case $run in *off*) ca=0;; esac
        s=$(date +%s.%N)
        EDITPROOF_COMPILE_AHEAD=$ca python3 -m editproof evaluate --baseline "$CFG" \
          --edit quant_rtn:8:32:attn --windows "$n" --seq-len 512 --out "$W/ca$run" --quiet \
          --force > "$OUT/ca$run.stdout" 2>&1
        python3 -c "import json,time; t=json.load(open('$W/ca$run/timings.json')); k=t['keys']; print('$run wall %.2f total %.2f startup %.2f torch %.2f warmup %.2f guards %.2f+%.2f measure %.2f+%.2f' % (time.time()-$s, t['total'], k['startup'], k['imports_torch'], k['warmup'], k['guards_baseline'], k['guards_subject'], k['measure_baseline'], k['measure_subject']), t.get('compile_ahead'), 'span', t['overlapped'].get('compile_ahead'))"
      done | tee "$OUT/ahead.txt"
      for run in 64-on5 64-off4 200-on; do cp "$W/ca$run/timings.json" "$OUT/ca$run.timings.json"; done ;;
    suiteahead)
      # The suite's model worker with modules compiled ahead: a small suite three times (the
      # first writes the list, then off, then on); run `suite` after it for the full one.
      rm -rf "$EDITPROOF_CACHE/compile-ahead"
      for run in first off on; do
        ca=1; [ $run = off ] && ca=0
        (cd bench && EDITPROOF_COMPILE_AHEAD=$ca python3 suite_gpus.py --models mistral-7b \
          --random --only one --workdir "$W/sa-$run" --json "$OUT/sa-$run.json" -- \
          --scenario-ids quant_4bit_clean,nan_injection --calibration-runs 2) | tail -1 |
          python3 -c "import json,sys; d=json.loads(sys.stdin.read()); w=list(d['workers'].values())[0]; print('$run wall', d['wall_s'], d['stdout'], '| worker imports', w['imports'], 'torch', w['imports_torch'], 'process_start', w['process_start'], 'tasks', w['tasks'], w.get('compile_ahead'))"
      done | tee "$OUT/suiteahead.txt" ;;
    preload)
      # The CUDA start beside the imports, on and off, three pairs of 64+64 in turn (torch's
      # import varies by a second between processes on this host: pairs, not single runs).
      python3 -m editproof evaluate --baseline "$CFG" --edit quant_rtn:8:32:attn --windows 64 \
        --seq-len 512 --out "$W/ab-warm" --quiet --force > /dev/null 2>&1
      for i in 1 2 3; do for p in 1 0; do
        s=$(date +%s.%N)
        EDITPROOF_PRELOAD=$p python3 -m editproof evaluate --baseline "$CFG" \
          --edit quant_rtn:8:32:attn --windows 64 --seq-len 512 --out "$W/ab$p$i" --quiet \
          --force > /dev/null 2>&1
        python3 -c "import json,time; t=json.load(open('$W/ab$p$i/timings.json')); k=t['keys']; print('preload=$p wall %.2f total %.2f startup %.2f torch %.2f cudawait %.2f' % (time.time()-$s, t['total'], k['startup'], k['imports_torch'], k.get('cuda_start_wait',0)))"
      done; done | tee "$OUT/preload.txt" ;;
    edges)
      # torch's import by module, the CUDA start beside the imports, the exit's teardown.
      python3 bench/process_edges.py importtime preload exit --repeats 3 | tee "$OUT/edges.txt" ;;
    throughput)
      python3 bench/eval_throughput.py --model mistral-7b --windows 128 --seq-len 512 \
        --batch-size 8,16,32 --repeats 2 | tee "$OUT/throughput.txt" ;;
    edits)
      python3 bench/edits.py --model mistral-7b --device cuda --workdir "$W/edits" \
        --specs quant_rtn:8:32:all,magnitude_prune:0.12:ffn | tee "$OUT/edits.txt" ;;
    guards)
      python3 bench/guards.py --model "$CFG" --windows 200 --seq-len 512 \
        --batch-size "${GUARDS_BATCH:-8}" \
        --json "$OUT/guards200.json" | grep -v '^{"bench"' | tee "$OUT/guards200.txt" ;;
    digest)
      python3 bench/digest_overlap.py --model mistral-7b --windows 128 --seq-len 512 \
        --batch-size 32 --repeats 2 | tee "$OUT/digest.txt" ;;
    peer64|peer200)
      # InvarLock's evaluate and ours on one saved model file and the same tokens.
      python3 bench/peer_invarlock.py --model mistral-7b --windows "${part#peer}" \
        --workdir "$W/peer" | tee "$OUT/$part.txt" ;;
    ray)
      # The same suite through the local executor and through Ray actors on this host.
      RAY_AUTH_MODE=disabled python3 bench/suite.py --model mistral-7b --executor local,ray \
        --workdir "$W/raysuite" --json "$OUT/ray.json" -- --scenario-ids \
        quant_4bit_clean,prune_50pct_stress,nan_injection,ve_mlp_scale_skew \
        --calibration-runs 2 | tee "$OUT/ray.txt" ;;
    suite)
      (cd bench && python3 suite_gpus.py --models mistral-7b --random --only one \
        --workdir "$W/suite" --json "$OUT/suite.json") | tee "$OUT/suite.txt" ;;
  esac
  echo "== $part: $(python3 -c "import time; print(round(time.time() - $start, 1))") s"
done
