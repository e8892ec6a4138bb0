#!/usr/bin/env bash
# Cloud TPU VM runs of spatialmix-jax: create, set up, train, watch, resume after preemption.
# Usage and safety rules: launch/README.md, or `launch/tpu_vm.sh help`.
# shellcheck disable=SC2088  # remote paths below start with ~ on purpose
set -euo pipefail

# The tildes are expanded by the workers' shell, not here.
# shellcheck disable=SC2088
readonly REMOTE_DIR='~/spatialmix-jax'
readonly REMOTE_LOG='~/spatialmix-train.log'
readonly REMOTE_EXIT='~/spatialmix-train.exit'
readonly REMOTE_PID='~/spatialmix-train.pid'

usage() {
  cat <<'EOF'
usage: launch/tpu_vm.sh COMMAND --name=NAME --zone=ZONE [flags] [-- CONFIG_OVERRIDES...]
commands:
  create   --accelerator=TYPE --runtime=VERSION [--spot]   new TPU VM (--spot: spot queued resource)
  setup    [--repo=URL [--ref=REF]]      copy this checkout (or clone URL) and pip install, all workers
  run      --bucket=gs://B --config=FILE [--workdir=gs://B/...] [--data-dir=gs://...] [-- --config.x=y]
  logs     [--worker=N] [--lines=N] [--follow]                     the training log of one worker
  status                                                           node state (describe)
  resume   create flags + run flags: recreate a PREEMPTED/SUSPENDED/TERMINATED node, setup, run
  delete   --yes                                                   delete the named node only
common flags: --project=ID (default: gcloud's), --python=python3.11, --dry-run (print commands)
EOF
}

die() {
  echo "error: $*; usage: launch/tpu_vm.sh COMMAND --name=NAME --zone=ZONE [flags] (all: launch/tpu_vm.sh help)" >&2
  exit 2
}

# --- accelerator types this script knows (a typo must not become a failed, billed request) ---
valid_accelerator() {
  local type=$1 family count
  family=${type%-*}
  count=${type##*-}
  [[ $type == *-* && $count =~ ^[0-9]+$ ]] || return 1
  case $family in
    v4) [[ " 8 16 32 64 128 256 512 1024 2048 4096 " == *" $count "* ]] ;;
    v5p) [[ " 8 16 32 64 128 256 512 1024 2048 4096 6144 8192 12288 " == *" $count "* ]] ;;
    v5litepod | v6e) [[ " 1 4 8 16 32 64 128 256 " == *" $count "* ]] ;;
    *) return 1 ;;
  esac
}
readonly KNOWN_ACCELERATORS='v4-{8,16,...,4096}, v5p-{8,16,...,8192,12288}, v5litepod-{1,4,8,...,256}, v6e-{1,4,8,...,256}'

# --- running or printing commands ---
DRY_RUN=0
run_cmd() {
  if ((DRY_RUN)); then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}

gcloud_tpu() {  # gcloud compute tpus ... with the common flags appended
  local args=(gcloud compute tpus "$@" "--zone=$ZONE")
  [[ -n $PROJECT ]] && args+=("--project=$PROJECT")
  run_cmd "${args[@]}"
}

on_workers() {  # on_workers WORKER COMMAND: a shell command on one or all workers
  gcloud_tpu tpu-vm ssh "$NAME" "--worker=$1" "--command=$2"
}

STATE=''
read_state() {  # STATE=READY, PREEMPTED, ...; NOT_FOUND when describe fails (nothing to delete)
  local args=(gcloud compute tpus tpu-vm describe "$NAME" "--zone=$ZONE" '--format=value(state)')
  [[ -n $PROJECT ]] && args+=("--project=$PROJECT")
  if ((DRY_RUN)); then  # show the recreation path: what a preempted node would get
    run_cmd "${args[@]}"
    STATE=PREEMPTED
    return
  fi
  STATE=$("${args[@]}" 2>/dev/null) || STATE=NOT_FOUND
  [[ -n $STATE ]] || STATE=NOT_FOUND
}

# --- subcommands ---
cmd_create() {
  [[ -n $ACCELERATOR ]] || die 'create needs --accelerator'
  [[ -n $RUNTIME ]] || die 'create needs --runtime (e.g. tpu-ubuntu2204-base, v2-alpha-tpuv5, v2-alpha-tpuv6e)'
  if ((SPOT)); then
    gcloud_tpu queued-resources create "$NAME" "--node-id=$NAME" \
      "--accelerator-type=$ACCELERATOR" "--runtime-version=$RUNTIME" --spot
    wait_until_ready
  else
    gcloud_tpu tpu-vm create "$NAME" "--accelerator-type=$ACCELERATOR" "--version=$RUNTIME"
  fi
}

wait_until_ready() {  # a queued resource is granted asynchronously
  local waited=0
  while true; do
    read_state
    ((DRY_RUN)) && return 0
    [[ $STATE == READY ]] && return 0
    ((waited < WAIT_SECONDS)) || die "$NAME is $STATE after ${WAIT_SECONDS}s; check 'status' later and run 'setup'/'run'"
    echo "waiting for $NAME (state: $STATE)" >&2
    sleep "$POLL_SECONDS"
    waited=$((waited + POLL_SECONDS))
  done
}

cmd_setup() {
  local fetch
  if [[ -n $REPO ]]; then
    fetch="rm -rf $REMOTE_DIR && git clone $(printf '%q' "$REPO") $REMOTE_DIR"
    [[ -n $REF ]] && fetch+=" && git -C $REMOTE_DIR checkout $(printf '%q' "$REF")"
  else
    # This checkout as it is (tracked and new files, not the venv or build outputs).
    local root archive
    root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
    archive="${TMPDIR:-/tmp}/spatialmix-jax-$NAME.tar.gz"
    if ((DRY_RUN)); then
      echo "git -C $(printf '%q' "$root") ls-files -z --cached --others --exclude-standard | tar -czf $(printf '%q' "$archive") -C $(printf '%q' "$root") --null -T -"
    else
      git -C "$root" ls-files -z --cached --others --exclude-standard \
        | tar -czf "$archive" -C "$root" --null -T -
    fi
    gcloud_tpu tpu-vm scp "$archive" "$NAME:spatialmix-jax.tar.gz" --worker=all
    fetch="rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf ~/spatialmix-jax.tar.gz -C $REMOTE_DIR"
  fi
  local py
  py=$(printf '%q' "$PYTHON")
  on_workers all "set -e; $fetch && cd $REMOTE_DIR \
&& { command -v $py >/dev/null || { sudo apt-get update -q && sudo apt-get install -y -q $py $py-venv; }; } \
&& $py -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[tpu]'"
}

cmd_run() {
  [[ -n $BUCKET ]] || die 'run needs --bucket=gs://BUCKET'
  [[ $BUCKET == gs://* ]] || die "--bucket must be a gs:// path, not '$BUCKET'"
  [[ -n $CONFIG ]] || die 'run needs --config (e.g. configs/convmixer_imagenet.py)'
  local workdir=${WORKDIR:-${BUCKET%/}/spatialmix/$NAME}
  local data_dir=${DATA_DIR:-${BUCKET%/}/tensorflow_datasets}
  local train=(.venv/bin/python main.py "--config=$CONFIG" "--workdir=$workdir" --distributed=yes
    "${OVERRIDES[@]}")
  local job
  # The exit code (75: preempted, resume) lands next to the log.
  job=$(printf '%q' "$(printf '%q ' "${train[@]}"); echo \$? > $REMOTE_EXIT")
  # One trainer per worker: a second `run` (or `resume` on a healthy node) must not start a
  # rival that writes the same workdir.
  on_workers all "cd $REMOTE_DIR && if kill -0 \"\$(cat $REMOTE_PID 2>/dev/null)\" 2>/dev/null; then \
echo \"\$(hostname): a trainer is already running\"; else rm -f $REMOTE_EXIT; \
TFDS_DATA_DIR=$(printf '%q' "$data_dir") nohup bash -c $job > $REMOTE_LOG 2>&1 < /dev/null & \
echo \$! > $REMOTE_PID; echo \"\$(hostname): started, log $REMOTE_LOG\"; fi"
  echo "workdir: $workdir" >&2
}

cmd_logs() {
  local tail_cmd="tail -n $LINES"
  ((FOLLOW)) && tail_cmd+=" -F"
  on_workers "$WORKER" "$tail_cmd $REMOTE_LOG; test -f $REMOTE_EXIT && echo \"exit code: \$(cat $REMOTE_EXIT)\" || true"
}

cmd_status() {
  if ((SPOT)); then
    gcloud_tpu queued-resources describe "$NAME" '--format=value(state.state)'
  fi
  gcloud_tpu tpu-vm describe "$NAME" '--format=value(state,health,acceleratorType)'
}

delete_node() {
  if ((SPOT)); then
    gcloud_tpu queued-resources delete "$NAME" --force --quiet
  else
    gcloud_tpu tpu-vm delete "$NAME" --quiet
  fi
}

cmd_resume() {
  read_state
  case $STATE in
    READY)
      echo "$NAME is READY: (re)starting the trainer unless one is running" >&2
      cmd_run ;;
    PREEMPTED | SUSPENDED | TERMINATED | STOPPED | FAILED)
      # Only a dead node, named explicitly, is replaced; the workdir is reused untouched and
      # the trainer resumes from its latest readable checkpoint.
      echo "$NAME is $STATE: recreating it and resuming the same workdir" >&2
      delete_node
      cmd_create
      cmd_setup
      cmd_run ;;
    NOT_FOUND)
      echo "$NAME does not exist: creating it and resuming the same workdir" >&2
      cmd_create
      cmd_setup
      cmd_run ;;
    *)
      echo "$NAME is $STATE (not ready, not dead): nothing to do; try again later" >&2 ;;
  esac
}

cmd_delete() {
  ((YES)) || die "delete removes TPU VM '$NAME' and whatever is on its disks; add --yes"
  delete_node
}

# --- arguments ---
main() {
  local command=${1:-}
  [[ -n $command ]] || { usage >&2; exit 2; }
  shift
  case $command in
    help | -h | --help) usage; exit 0 ;;
    create | setup | run | logs | status | resume | delete) ;;
    *) die "unknown command '$command' (create, setup, run, logs, status, resume, delete)" ;;
  esac

  NAME='' ZONE='' PROJECT='' ACCELERATOR='' RUNTIME='' SPOT=0 BUCKET='' CONFIG='' WORKDIR=''
  DATA_DIR='' REPO='' REF='' PYTHON=python3.11 WORKER=0 LINES=100 FOLLOW=0 YES=0
  POLL_SECONDS=30 WAIT_SECONDS=3600 OVERRIDES=()
  local flag
  while (($#)); do
    flag=$1
    # `--flag value` as well as `--flag=value`, as gcloud accepts both.
    if [[ $flag =~ ^--(name|zone|project|accelerator|runtime|bucket|config|workdir|data-dir|repo|ref|python|worker|lines|poll-seconds|wait-seconds)$ ]]; then
      (($# >= 2)) || die "$flag needs a value"
      shift
      flag="$flag=$1"
    fi
    case $flag in
      --) shift; OVERRIDES=("$@"); break ;;
      --dry-run) DRY_RUN=1 ;;
      --spot) SPOT=1 ;;
      --follow) FOLLOW=1 ;;
      --yes) YES=1 ;;
      --name=*) NAME=${flag#*=} ;;
      --zone=*) ZONE=${flag#*=} ;;
      --project=*) PROJECT=${flag#*=} ;;
      --accelerator=*) ACCELERATOR=${flag#*=} ;;
      --runtime=*) RUNTIME=${flag#*=} ;;
      --bucket=*) BUCKET=${flag#*=} ;;
      --config=*) CONFIG=${flag#*=} ;;
      --workdir=*) WORKDIR=${flag#*=} ;;
      --data-dir=*) DATA_DIR=${flag#*=} ;;
      --repo=*) REPO=${flag#*=} ;;
      --ref=*) REF=${flag#*=} ;;
      --python=*) PYTHON=${flag#*=} ;;
      --worker=*) WORKER=${flag#*=} ;;
      --lines=*) LINES=${flag#*=} ;;
      --poll-seconds=*) POLL_SECONDS=${flag#*=} ;;
      --wait-seconds=*) WAIT_SECONDS=${flag#*=} ;;
      *) die "unknown flag '$flag'" ;;
    esac
    shift
  done

  [[ -n $NAME ]] || die "$command needs --name"
  [[ -n $ZONE ]] || die "$command needs --zone"
  [[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name '$NAME' must be lowercase letters, digits and dashes"
  if [[ -n $ACCELERATOR ]] && ! valid_accelerator "$ACCELERATOR"; then
    die "unknown accelerator type '$ACCELERATOR'; known: $KNOWN_ACCELERATORS"
  fi
  [[ $WORKER == all || $WORKER =~ ^[0-9]+$ ]] || die "--worker must be a number or 'all'"
  [[ $LINES =~ ^[0-9]+$ ]] || die '--lines must be a number'
  [[ $POLL_SECONDS =~ ^[0-9]+$ && $WAIT_SECONDS =~ ^[0-9]+$ ]] || die '--poll-seconds/--wait-seconds must be numbers'
  if [[ $command == resume ]]; then  # everything a recreation needs, before touching anything
    [[ -n $ACCELERATOR && -n $RUNTIME ]] || die 'resume needs --accelerator and --runtime (to recreate a dead node)'
    [[ -n $BUCKET && -n $CONFIG ]] || die 'resume needs --bucket and --config (to restart training)'
  fi
  "cmd_$command"
}

main "$@"
