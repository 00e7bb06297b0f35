#!/bin/sh
# A flow as a plain shell script: stages in order, a fan-out in parallel, and the script
# stops at the first stage that fails, with that stage's exit code.
set -e
design=${1:-top}

apr-sched submit --wait --name "$design.synth" -- echo "synth $design"

# three corners side by side: submit prints each job's id; wait blocks on all of them
# and exits with the worst outcome
ids=""
for corner in ss tt ff; do
  ids="$ids $(apr-sched submit --name "$design.sta.$corner" -- echo "sta $design $corner")"
done
apr-sched wait $ids

apr-sched submit --wait --name "$design.signoff" -- echo "signoff $design"
