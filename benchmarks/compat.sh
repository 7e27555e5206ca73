#!/usr/bin/env bash
# Does a kgtest checkpoint load in a transformers 4.x environment (open-unlearning, TOFU,
# TransformerLens run 4.x)? Builds a throwaway venv with that release, loads a checkpoint
# with AutoModelForCausalLM / AutoTokenizer, and compares token ids and logits with what
# kgtest's own environment computes. Not part of `make test` (it installs packages).
#
#   benchmarks/compat.sh [MODEL_DIR]            # default: tiny GPT-2/Llama, word/BPE
#   TRANSFORMERS_VERSION=4.46.3 benchmarks/compat.sh runs/demo/model-*/model
#
# Environment: TRANSFORMERS_VERSION (default 4.57.6), COMPAT_VENV (default a temp folder,
# removed at the end unless KEEP_VENV=1), PYTHON (default python3). Exit status 0 when
# every checkpoint loads and matches (ids equal, max |logit difference| <= 1e-4).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KG_PY=${KG_PY:-$ROOT/.venv/bin/python}
VERSION=${TRANSFORMERS_VERSION:-4.57.6}
VENV=${COMPAT_VENV:-$(mktemp -d /tmp/kgtest-compat.XXXXXX)/venv}
WORK=$(mktemp -d /tmp/kgtest-compat-work.XXXXXX)
cleanup() {
    rm -rf "$WORK"
    if [ -z "${KEEP_VENV:-}" ] && [ -z "${COMPAT_VENV:-}" ]; then rm -rf "$(dirname "$VENV")"; fi
}
trap cleanup EXIT

if [ ! -x "$VENV/bin/python" ]; then
    echo "== building $VENV with transformers==$VERSION"
    "${PYTHON:-python3}" -m venv "$VENV"
    # torch first: 2.13.0 is a local CPU wheel here; a bare `torch` pulls CUDA builds (GBs)
    "$VENV/bin/pip" install -q "torch==2.13.0"
    "$VENV/bin/pip" install -q "transformers==$VERSION" numpy safetensors
fi
"$VENV/bin/python" -c "import transformers, tokenizers, torch; print('compat venv: transformers',
transformers.__version__, 'tokenizers', tokenizers.__version__, 'torch', torch.__version__)"

# 1. kgtest's side: checkpoints (given or made here), prompts, ids and logits
PYTHONPATH=$ROOT "$KG_PY" - "$WORK" "$@" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np, torch, transformers
from kgtest.corpus.tokenizer import build_tokenizer
from kgtest.model import ModelConfig, build_model, load_model, save_model

work, given = Path(sys.argv[1]), sys.argv[2:]
docs = ["Q ann parent ? A bob", "ann parent bob . bob parent cy . A cy", "Q bob parent ? T "]
if not given:
    tok = build_tokenizer(docs)
    natural = ["Question: Who is the parent of Ann Lee? Answer: Bob Ray",
               "Ann Lee is the parent of Bob Ray."] * 20
    bpe = build_tokenizer(natural, kind="bpe", vocab_size=300)
    for arch, t in (("gpt2", tok), ("llama", tok), ("gpt2", bpe)):
        model = build_model(ModelConfig(arch=arch, preset="tiny"), t, seed=0)
        name = f"tiny-{arch}-{'bpe' if t is bpe else 'word'}"
        given.append(str(save_model(model, t, work / name)))
cases = []
for i, d in enumerate(given):
    model, tok = load_model(d)
    prompts = docs
    if "Ġ" in "".join(tok.get_vocab()):  # a BPE checkpoint: natural-language prompts
        prompts = ["Question: Who is the parent of Ann? Answer: ", "Ann is the parent of"]
    enc = tok(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    np.save(work / f"logits-{i}.npy", logits.numpy())
    cases.append({"dir": str(Path(d).resolve()), "prompts": prompts,
                  "ids": enc["input_ids"].tolist(), "mask": enc["attention_mask"].tolist()})
(work / "cases.json").write_text(json.dumps(cases))
print(f"kgtest venv: transformers {transformers.__version__}; {len(cases)} checkpoint(s)")
EOF

# 2. the transformers 4.x side: plain Auto* loading, same ids, same logits
"$VENV/bin/python" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np, torch
from transformers import AutoModelForCausalLM, AutoTokenizer

work = Path(sys.argv[1])
bad = 0
for i, case in enumerate(json.loads((work / "cases.json").read_text())):
    tok = AutoTokenizer.from_pretrained(case["dir"])
    model = AutoModelForCausalLM.from_pretrained(case["dir"]).eval()
    enc = tok(case["prompts"], padding=True, return_tensors="pt")
    same_ids = enc["input_ids"].tolist() == case["ids"]
    with torch.no_grad():
        logits = model(**enc).logits.numpy()
    ref = np.load(work / f"logits-{i}.npy")
    mask = np.array(case["mask"], dtype=bool)  # compare real tokens only
    diff = float(np.abs(logits - ref)[mask].max())
    ok = same_ids and diff <= 1e-4
    bad += not ok
    print(f"{'OK  ' if ok else 'FAIL'} {type(tok).__name__} + {type(model).__name__} "
          f"({Path(case['dir']).name}): ids {'equal' if same_ids else 'DIFFER'}, "
          f"max |logit diff| {diff:.2e}")
sys.exit(1 if bad else 0)
EOF
