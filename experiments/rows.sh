#!/usr/bin/env bash
# The CIFAR-10 rows of experiments/RESULTS.md on the converged baselines (issue 28), one command per row.
#
#   bash experiments/rows.sh list                 # every row name
#   bash experiments/rows.sh show ROW [ROW ...]   # the overrides of rows
#   bash experiments/rows.sh run ROW [ROW ...]    # run rows one after the other (a finished row is skipped; an
#                                                 # interrupted one continues from its checkpoints)
#   bash experiments/rows.sh keep ROW             # copy a finished row's results.json, log, CSVs and pruning plan
#                                                 # (plan.json) to results/converged/ROW; a baseline row also installs
#                                                 # its weights as experiments/checkpoints/<net>_s<seed>.pt (over 2 MB:
#                                                 # logs/checkpoints/, git-ignored, this machine only)
#   bash experiments/rows.sh carry ROW            # pack a stopped, unfinished row into experiments/carry/ROW.tar.gz: commit it,
#                                                 # and `run ROW` on a fresh machine or clone continues from it (a pack
#                                                 # over 2 MB is refused: the row continues only on this machine)
#
# Each row runs in logs/rows/ROW (git-ignored). The method rows read the baselines from experiments/checkpoints/
# (resnet20_s{0,1}.pt; resnet26_s0.pt, the one teacher of every distillation seed: the `final` model.pt of the
# baseline rows, sha256 in RESULTS.md), or from logs/checkpoints/ when `keep` found them over 2 MB (the VGG-11/2
# baseline, 9 MB: this machine only); the controls read the method row's compressed model from logs/rows/, or, once
# that folder is gone (a clean clone), the plan.json that `keep` committed beside the row's results (every FPGM row,
# fpgm40, fpgm40_authors, fpgm40_oneshot, fpgm_mix and fpgm_mix_oneshot, removes int(0.4 N) of every conv's N filters,
# so their random controls have the same widths: each reads its own row and runs once that row has). THREADS (default
# 2) intra-op threads per run. `run ROW` continues an interrupted row from its folder (its checkpoints stay out of
# git), or, when the folder is missing, from the row's `carry` pack (a row longer than one session on this CPU, e.g. a
# 100-epoch baseline, is carried from machine to machine this way; `keep` deletes the pack once the row is done).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
CK=${CK:-experiments/checkpoints}   # CK, ROWS, KEPT: overridable for tests
ROWS=${ROWS:-logs/rows}
KEPT=${KEPT:-experiments/results/converged}
CARRY=${CARRY:-experiments/carry}
LOCAL_CK=${LOCAL_CK:-logs/checkpoints}  # baseline weights over COMMIT_LIMIT (git-ignored: a new machine trains them again)
COMMIT_LIMIT=${COMMIT_LIMIT:-2000000}   # bytes: the most a committed weights file or carry pack may hold
BASELINE_EPOCHS=100   # the converged CPU baseline: +experiment=cifar10_cpu at 100 one-cycle epochs
FINETUNE_EPOCHS=10
LI_RETRAIN_EPOCHS=25  # *_ft25 rows: Li et al.'s retraining budget, one-fourth of the training epochs (40 of 160)

row() {  # the overrides of one row
  local name=$1 seed=${1##*_s} r20 teacher
  r20=$(weights_file "resnet20_s$seed.pt")  # the seed's ResNet-20 baseline
  teacher=$(weights_file resnet26_s0.pt)  # one ResNet-26 teacher for every student seed: the seed varies the student
  case $name in
    baseline_r20_s?) echo "+experiment=cifar10_cpu data=cifar10 model=resnet20 trainer.max_epochs=$BASELINE_EPOCHS" ;;
    baseline_r26_s?) echo "+experiment=cifar10_cpu data=cifar10 model=resnet26 trainer.max_epochs=$BASELINE_EPOCHS" ;;
    baseline_vgg11h_s?) echo "+experiment=cifar10_cpu data=cifar10 model=vgg11_half trainer.max_epochs=$BASELINE_EPOCHS" ;;
    l1_b_s?) echo "+experiment=resnet20_cifar10_l1_cpu method.pretrained=$r20" ;;
    l1_b_ft25_s?) echo "+experiment=resnet20_cifar10_l1_cpu method.pretrained=$r20 method.finetune.epochs=$LI_RETRAIN_EPOCHS" ;;
    l1_b_kd_s?) echo "+experiment=resnet20_cifar10_l1_cpu method.pretrained=$r20 method.finetune.distill=kd" ;;
    l1_50_s?) echo "+experiment=resnet20_cifar10_l1_50_cpu method.pretrained=$r20" ;;
    fpgm40_s?) echo "+experiment=resnet20_cifar10_fpgm_cpu method.pretrained=$r20" ;;
    fpgm40_authors_s?) echo "+experiment=resnet20_cifar10_fpgm_cpu method.pretrained=$r20 method.callback.soft_mode=authors_code" ;;  # the authors' code's soft pruning (gradients masked), then the recipe's fine-tune
    fpgm40_oneshot_s?) echo "+experiment=resnet20_cifar10_fpgm_oneshot_cpu method.pretrained=$r20" ;;
    fpgm_mix_oneshot_s?) echo "+experiment=resnet20_cifar10_fpgm_oneshot_cpu method.pretrained=$r20 method.callback.norm_ratio=0.1" ;;  # FPGM-mix's criterion (30% GM + 10% norm) held from the baseline
    fpgm_mix_s?) echo "+experiment=resnet20_cifar10_fpgm_mix_cpu method.pretrained=$r20" ;;
    slim40_s?) echo "+experiment=resnet20_cifar10_slimming_cpu method.pretrained=$r20 method.callback.sparsity_lambda=5e-3" ;;
    slim40_s3e3_s?) echo "+experiment=resnet20_cifar10_slimming_cpu method.pretrained=$r20" ;;  # the recipe's s
    slim40_lowlr_s?) echo "+experiment=resnet20_cifar10_slimming_lowlr_cpu method.pretrained=$r20" ;;
    slim40_kd_s?) echo "+experiment=resnet20_cifar10_slimming_cpu method.pretrained=$r20 method.finetune.distill=kd" ;;
    vgg_slim70_s?) echo "+experiment=vgg11_half_cifar10_slimming_cpu method.pretrained=$(baseline_of vgg_slim70 "$seed")" ;;
    fsp_s?) echo "+experiment=resnet26_resnet8_cifar10_fsp_cpu method.teacher=$teacher" ;;
    fsp_kd_s?) echo "+experiment=resnet26_resnet8_cifar10_fsp_kd_cpu method.teacher=$teacher method.student_alone.epochs=0 method.student_equal_compute.epochs=0" ;;  # its student alone and equal compute are fsp_s?'s (the same config and seed): recorded "not run" here, not trained twice
    kd_s?) echo "+experiment=resnet26_resnet8_cifar10_kd_cpu method.teacher=$teacher" ;;
    random_*_s?)  # random channels at a method row's widths, the method row's fine-tune
      local of=${name#random_} experiment; of=${of%_s?}
      experiment=$(random_of "$of") || return 1  # an unknown method row must stop here, not train a default run
      local epochs=""; [[ $of == *_ft25 ]] && epochs=" method.compress.epochs=$LI_RETRAIN_EPOCHS"  # its row's retraining
      echo "$experiment method.pretrained=$(baseline_of "$of" "$seed") method.callback.reference=$(reference_of "${of}_s$seed")$epochs" ;;
    scratchb_*_s?)  # Scratch-B: the pruned architecture from fresh weights, the baseline's + the fine-tune's epochs
      local of=${name#scratchb_}; of=${of%_s?}
      echo "+experiment=cifar10_cpu data=cifar10 model=$(model_of "$of") +method=scratch_widths method.pretrained=$(baseline_of "$of" "$seed") method.callback.reference=$(reference_of "${of}_s$seed") method.compress.epochs=$((BASELINE_EPOCHS + FINETUNE_EPOCHS))" ;;
    *) echo "unknown row: $name" >&2; return 1 ;;
  esac
}

random_of() {
  case $1 in
    l1_b|l1_b_ft25|l1_50) echo "+experiment=resnet20_cifar10_l1_random_cpu" ;;
    fpgm40|fpgm40_authors|fpgm40_oneshot|fpgm_mix|fpgm_mix_oneshot) echo "+experiment=resnet20_cifar10_fpgm_random_cpu" ;;
    slim40|slim40_lowlr|slim40_s3e3) echo "+experiment=resnet20_cifar10_slimming_random_cpu" ;;
    vgg_slim70) echo "+experiment=vgg11_half_cifar10_slimming_random_cpu" ;;
    *) echo "no random control for $1" >&2; return 1 ;;
  esac
}

model_of() {  # the network of a method row (and so of its controls)
  case $1 in vgg_slim70) echo vgg11_half ;; *) echo resnet20 ;; esac
}

baseline_of() {  # the baseline weights a method row (and so its controls) starts from, at seed $2
  case $1 in vgg_slim70) weights_file vgg11_half_s0.pt ;; *) weights_file "resnet20_s$2.pt" ;; esac  # one VGG baseline
}

all_rows() {
  echo baseline_r20_s0 baseline_r20_s1 baseline_r26_s0 baseline_vgg11h_s0
  for s in 0 1; do
    for r in l1_b l1_b_ft25 l1_b_kd l1_50 fpgm40 fpgm40_authors fpgm40_oneshot fpgm_mix fpgm_mix_oneshot slim40 slim40_lowlr slim40_s3e3 slim40_kd fsp fsp_kd kd; do echo ${r}_s$s; done
    for r in l1_b l1_50 fpgm40 fpgm_mix slim40 slim40_lowlr slim40_s3e3; do echo random_${r}_s$s scratchb_${r}_s$s; done
    echo random_l1_b_ft25_s$s  # l1_b_ft25 has l1_b's widths: no Scratch-B row of its own
    echo random_fpgm40_oneshot_s$s
  done
  for s in 0 1 2; do echo vgg_slim70_s$s random_vgg_slim70_s$s scratchb_vgg_slim70_s$s; done
}

is_done() {  # whether a row's results.json says it finished
  grep -qs '"status": "done"' "$ROWS/$1/results.json"
}

run_row() {
  local name=$1 seed=${1##*_s}
  local overrides; overrides=$(row "$name")
  local dir=$ROWS/$name
  if [ ! -e "$dir" ] && [ -f "$CARRY/$name.tar.gz" ]; then  # a row carried over from another machine
    mkdir -p "$ROWS" && tar -xzf "$CARRY/$name.tar.gz" -C "$ROWS"
    echo "$name: continues from $CARRY/$name.tar.gz"
  fi
  if is_done "$name"; then echo "$name: done"; return; fi
  mkdir -p "$dir"
  local resume=()
  [ -f "$dir/results.json" ] && resume=(resume="$dir")
  echo "$name: $PY train.py $overrides seed=$seed threads=$THREADS ${resume[*]}"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=$THREADS $PY train.py $overrides seed="$seed" threads="$THREADS" "${resume[@]}" \
    hydra.run.dir="$dir" >> "$dir.log" 2>&1
}

reference_of() {  # the widths a control copies: the method row's compressed model, else the plan.json its `keep` wrote
  local row candidates=("$1")
  # l1_b and l1_b_ft25 make the same cut (one criterion on one baseline; 76.89 / 76.40 right after it at seeds 0 / 1
  # in both rows): either row's plan serves l1_b's controls
  [[ $1 == l1_b_s? ]] && candidates+=("l1_b_ft25_s${1##*_s}")
  for row in "${candidates[@]}"; do
    if [ -f "$ROWS/$row/stages/compressed/model.pt" ]; then echo "$ROWS/$row/stages/compressed/model.pt"; return; fi
    if [ -f "$KEPT/$row/plan.json" ]; then echo "$KEPT/$row/plan.json"; return; fi
  done
  echo "$ROWS/$1/stages/compressed/model.pt"  # not there yet: the control names what it waits for
}

write_plan() {  # a pruned row's plan as JSON beside its kept results: its controls run from a clean clone with it
  "$PY" -c 'import json, sys
from lightning_compress.callbacks.controls import reference_plan
with open(sys.argv[2], "w") as out:
    json.dump(reference_plan(sys.argv[1]).to_dict(), out)' "$1" "$2"
}

weights_file() {  # where a baseline's weights file is: committed in CK, or (over COMMIT_LIMIT) this machine's LOCAL_CK
  if [ ! -f "$CK/$1" ] && [ -f "$LOCAL_CK/$1" ]; then echo "$LOCAL_CK/$1"; else echo "$CK/$1"; fi
}

weights_name_of() {  # the weights file name of a baseline row (nothing for other rows)
  local seed=${1##*_s}
  case $1 in
    baseline_r20_s?) echo "resnet20_s$seed.pt" ;;
    baseline_r26_s?) echo "resnet26_s$seed.pt" ;;
    baseline_vgg11h_s?) echo "vgg11_half_s$seed.pt" ;;
  esac
}

keep_row() {
  local name=$1 out=$KEPT/$1 weights
  if ! is_done "$name"; then
    echo "keep $name: $ROWS/$name/results.json does not say \"status\": \"done\" (not run, or not finished)" >&2
    return 1
  fi
  mkdir -p "$out"
  cp "$ROWS/$name/results.json" "$ROWS/$name/train.log" "$out/"
  if [ -d "$ROWS/$name/csv" ]; then
    (cd "$ROWS/$name" && find csv -name metrics.csv -o -name gamma.png) | while read -r f; do
      mkdir -p "$out/$(dirname "$f")"; cp "$ROWS/$name/$f" "$out/$f"; done
  fi
  if [[ $name != random_* && $name != scratchb_* ]] && [ -f "$ROWS/$name/stages/compressed/model.pt" ]; then  # a control has no controls
    write_plan "$ROWS/$name/stages/compressed/model.pt" "$out/plan.json"
    echo "$name: its pruning plan in $out/plan.json (what its controls read once $ROWS/$name is gone)"
  fi
  weights=$(weights_name_of "$name")
  if [ -n "$weights" ]; then
    local size; size=$(stat -c %s "$ROWS/$name/stages/final/model.pt")
    if [ "$size" -le "$COMMIT_LIMIT" ]; then
      weights=$CK/$weights
    else  # too big to commit: kept on this machine only
      weights=$LOCAL_CK/$weights
      echo "$name: its weights ($size bytes) are over the $COMMIT_LIMIT-byte limit for committed files: installed" \
        "in $weights (git-ignored), not committed; a new machine runs $name again"
    fi
    mkdir -p "$(dirname "$weights")"
    cp "$ROWS/$name/stages/final/model.pt" "$weights"
    echo "$name: weights in $weights, sha256 $(sha256sum "$weights" | cut -d' ' -f1) (for RESULTS.md)"
  fi
  if [ -f "$CARRY/$name.tar.gz" ]; then rm "$CARRY/$name.tar.gz"; echo "$name: removed its carry pack $CARRY/$name.tar.gz"; fi
}

carry_row() {
  local name=$1 dir=$ROWS/$1
  if [ ! -f "$dir/results.json" ]; then echo "carry $name: $dir/results.json not found (the row never started)" >&2; return 1; fi
  if is_done "$name"; then echo "carry $name: the row is done; \`keep\` it instead" >&2; return 1; fi
  if pgrep -f "hydra.run.dir=.*/$name\$" > /dev/null; then  # any checkout or ROWS spelling
    echo "carry $name: the row is still training in $dir; stop it first (its last.ckpt may be half written)" >&2; return 1
  fi
  mkdir -p "$CARRY"
  # epoch=N.ckpt repeats last.ckpt (Lightning's top-1 copy): left out
  local pack=$CARRY/$name.tar.gz new=$CARRY/.$name.tar.gz.new size  # a pack already there stays until the new one fits
  tar -czf "$new" -C "$ROWS" --exclude='epoch=*.ckpt' "$name"
  size=$(stat -c %s "$new")
  if [ "$size" -gt "$COMMIT_LIMIT" ]; then
    rm "$new"
    echo "carry $name: its pack would hold $size bytes, over the $COMMIT_LIMIT-byte limit for committed files: not" \
      "packed; the row continues only from $dir on this machine" >&2
    return 1
  fi
  mv "$new" "$pack"
  echo "$name: packed into $pack ($size bytes); commit it"
}

case ${1:-list} in
  list) all_rows | tr ' ' '\n' ;;
  show) shift; for r in "$@"; do overrides=$(row "$r"); echo "$r: $overrides seed=${r##*_s}"; done ;;
  run) shift; for r in "$@"; do run_row "$r"; done ;;
  keep) shift; for r in "$@"; do keep_row "$r"; done ;;
  carry) shift; for r in "$@"; do carry_row "$r"; done ;;
  *) echo "usage: $0 list | show ROW... | run ROW... | keep ROW... | carry ROW..." >&2; exit 2 ;;
esac
