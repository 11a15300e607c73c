#!/usr/bin/env bash
# Paper Tab. 3: the DeepLens ablation on COCO Karpathy test (BLEU-4 / METEOR / ROUGE-L / CIDEr).
# Every row is trained from the same stage-1 specialist (docs/training.md sections 1-4 make
# outputs/checkpoints/specialist and outputs/checkpoints/ser; Java is needed for the metrics).
set -euo pipefail
DATA="${DATA:-data}"
CKPT="${CKPT:-outputs/checkpoints}"
OUT="${OUT:-outputs/tab3}"
mkdir -p "$OUT"

# the two variants not made by the default recipe: DeepLens reads (1) only or (2) only
captioner train --config configs/train/stage2.yaml --set model.config.deeplens_multilayer_input=false \
    --set training.output_dir="$CKPT/ser-caption-only"
captioner train --config configs/train/stage2.yaml --set model.config.deeplens_caption_input=false \
    --set training.output_dir="$CKPT/ser-multilayer-only"
# "single glance with (2)": the connector reads layers {13, 18, 23} from pretraining on
captioner train --config configs/train/pretrain.yaml --set model.config.first_glance_multilayer=true \
    --set training.output_dir="$CKPT/pretrain-multilayer"
captioner train --config configs/train/stage1.yaml --set model.init_from="$CKPT/pretrain-multilayer" \
    --set training.output_dir="$CKPT/single-glance-multilayer"

# one row each: held-out scores, also written into each checkpoint's model card (README.md)
for row in specialist single-glance-multilayer ser-caption-only ser-multilayer-only ser; do
    captioner eval --model "$CKPT/$row" --references "$DATA/coco/dataset_coco.json" --split test \
        --image-root "$DATA/coco" --predictions "$OUT/$row.jsonl" --json "$OUT/$row.json" --markdown "$OUT/$row.md" \
        --name "$row"
done
cat "$OUT"/*.md
