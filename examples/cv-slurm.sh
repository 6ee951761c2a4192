#!/bin/bash
# osteo cv as a Slurm job array: one array task per shard, all writing into one shared OUT, then a
# dependent job that collects. Submit from the repository root on the cluster's shared filesystem:
#
#   jobid=$(sbatch --parsable examples/cv-slurm.sh)
#   sbatch --dependency=afterok:$jobid --wrap 'exec node_modules/.bin/osteo cv collect reports/cv'
#
# A task that is stopped (time limit, preemption, scancel) gets SIGTERM: osteo finishes its step,
# saves `last` and exits; resubmitted (`sbatch --array=<its index> examples/cv-slurm.sh`), it resumes
# from there and skips finished jobs. --signal=B:TERM@300 sends that SIGTERM to the batch shell five
# minutes before the time limit, and `exec` makes osteo that shell (bash does not pass a signal on to
# its child, nor does npx); --checkpoint-every bounds what a SIGKILL without warning can cost.
#SBATCH --job-name=osteo-cv
#SBATCH --array=1-5
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --signal=B:TERM@300
#SBATCH --output=reports/cv-logs/%A_%a.log
set -euo pipefail
SHARDS=5   # keep in step with --array
# --workers is fixed so every node rounds the same way (the result of a job does not depend on the node).
exec node_modules/.bin/osteo cv --model resnet18 resnet50 --data datasets/knee --folds 5 --seed 42 --workers 4 \
  --checkpoint-every 10m --out reports/cv --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}"
