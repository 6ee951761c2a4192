#!/bin/bash
# osteo cv as a Slurm job array: one array task per shard, all writing into one shared OUT, then a
# dependent job that collects. Submit from the repository root on the cluster's shared filesystem:
#
#   jobid=$(sbatch --parsable examples/cv-slurm.sh)
#   sbatch --dependency=afterok:$jobid --wrap 'npx osteo cv collect reports/cv'
#
# A task that is killed (time limit, preemption) resumes from its checkpoint when resubmitted:
# `sbatch --array=<its index> examples/cv-slurm.sh`; finished jobs are skipped.
#SBATCH --job-name=osteo-cv
#SBATCH --array=1-5
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=reports/cv-logs/%A_%a.log
set -euo pipefail
SHARDS=5   # keep in step with --array
# --workers is fixed so every node rounds the same way (the result of a job does not depend on the node).
npx osteo cv --model resnet18 resnet50 --data datasets/knee --folds 5 --seed 42 --workers 4 \
  --out reports/cv --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}"
