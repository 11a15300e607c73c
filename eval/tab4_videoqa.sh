#!/usr/bin/env bash
# Paper Tab. 4: long-range video QA on EgoSchema's 500-question subset, Qwen2.5-14B-Instruct answering
# from each captioner's transcript (1 fps, "Describe this frame within 50 words"), plus the rows the
# paper does not have: light modern VLMs and a video LLM watching the frames itself.
#   weights: hf download Qwen/Qwen2.5-14B-Instruct; hf download llava-hf/llava-1.5-7b-hf; hf download Salesforce/blip2-opt-2.7b
#   SeR / specialist: trained with docs/training.md; SmallCap / Tag2Text / LLaVA-1.0 / LaViLa: caption files
#   (configs/captioners/<name>.yaml says where each is read from).
set -euo pipefail
DATA="${DATA:-data}"
LLM="${LLM:-qwen2.5-14b-instruct}"

# the paper's columns, in its order, and a video-LLM row (frames straight to Qwen2.5-VL-7B) in the same table
videoqa compare --dataset egoschema --data-root "$DATA/egoschema" --llm "$LLM" \
    --captioners llava-1.0,blip2,llava-1.5,smallcap,tag2text,specialist,ser --video-llms qwen2.5-vl-7b-instruct

# light modern VLMs beside SeR, same LLM, same table layout
videoqa compare --dataset egoschema --data-root "$DATA/egoschema" --llm "$LLM" \
    --captioners smolvlm-256m,smolvlm-500m,qwen2.5-vl-3b,llava-next-7b,ser
