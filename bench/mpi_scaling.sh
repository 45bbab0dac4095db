#!/usr/bin/env bash
# Throughput of data-parallel training on this machine: 2 ranks x 1 thread (mpirun) against
# one process x 1 thread and one process x 2 threads, on the adding task at a batch where
# compute dominates. The three configurations alternate within each round (the machine's
# speed drifts), and the figures are medians over the rounds of the steps per second that
# `metrics.json` reports (training time alone: no MPI start-up, no evaluation, no plot).
#
#   cargo build --release --features mpi
#   bench/mpi_scaling.sh [ROUNDS] [BATCH] [HIDDEN] [STEPS]
#
# Needs Open MPI's or MPICH's mpirun. Run it on an otherwise idle machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=${1:-5}
batch=${2:-256}
hidden=${3:-128}
steps=${4:-30}
lstm=${LSTM:-target/release/lstm}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Open MPI as root (CI), more ranks than cores allowed; MPICH ignores these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

common=(train --quiet --overwrite --task adding --seq-len 50 --hidden "$hidden"
    --batch "$batch" --steps "$steps" --checkpoint-every 0)

# Steps per second of one run in directory $1.
rate() {
    sed -n 's/.*"steps_per_second": \([0-9.e+-]*\).*/\1/p' "$1/metrics.json"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

: >"$out/one" >"$out/two_threads" >"$out/two_ranks" >"$out/ratios"
for round in $(seq "$rounds"); do
    "$lstm" "${common[@]}" --threads 1 --out "$out/run" >/dev/null
    one=$(rate "$out/run")
    "$lstm" "${common[@]}" --threads 2 --out "$out/run" >/dev/null
    two_threads=$(rate "$out/run")
    mpirun -np 2 "$lstm" "${common[@]}" --threads 1 --distributed --out "$out/run" >/dev/null
    two_ranks=$(rate "$out/run")
    echo "$one" >>"$out/one"
    echo "$two_threads" >>"$out/two_threads"
    echo "$two_ranks" >>"$out/two_ranks"
    awk -v a="$two_ranks" -v b="$one" -v c="$two_threads" \
        'BEGIN { printf "%.3f %.3f\n", a / b, a / c }' >>"$out/ratios"
    echo "round $round: 1x1 $one, 1x2 $two_threads, 2x1 $two_ranks steps/s" >&2
done

echo "adding T=50, hidden $hidden, global batch $batch, $steps steps, $rounds rounds"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "median steps/s: 1 process x 1 thread $(median <"$out/one")," \
    "1 process x 2 threads $(median <"$out/two_threads"), 2 ranks x 1 thread $(median <"$out/two_ranks")"
echo "median ratio of the round: 2 ranks / 1x1 $(cut -d' ' -f1 "$out/ratios" | median)," \
    "2 ranks / 1x2 $(cut -d' ' -f2 "$out/ratios" | median)"
