#!/usr/bin/env bash
# One session on a lent H100: the measured profile, validation against real models, concurrency pairs.
# Run from the repository root with $OUT set; diffusers (and importlib_metadata) travel as wheels in .whl/.
set -u
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD" || exit 1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
start=$(date +%s)
timeout "${CALIBRATION_S:-330}" python3 -m calibration run --device cuda --dtype fp16 \
    --workloads llama2-7b imagen stable-diffusion muse parti prod-image make-a-video phenaki \
    --out "$OUT/h100-sxm.json" 2> "$OUT/calibration.log"
echo "calibration: exit $? after $(( $(date +%s) - start )) s"; tail -c 600 "$OUT/calibration.log"; echo
python3 -m calibration validate --device cuda --profile "$OUT/h100-sxm.json" --out "$OUT/validation.csv" \
    2> "$OUT/validate.log"; echo "validate: exit $?"; tail -n 14 "$OUT/validate.log"
python3 -m calibration concurrency --out "$OUT/concurrency.csv" > "$OUT/concurrency.log" 2>&1
echo "concurrency: exit $?"; cat "$OUT/concurrency.log" | tail -n 8
echo "total $(( $(date +%s) - start )) s"
