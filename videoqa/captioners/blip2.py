"""BLIP-2 as a frame captioner (`blip2`), e.g. `Salesforce/blip2-opt-2.7b` (3.9B parameters).

BLIP-2 reads 32 Q-Former query embeddings in front of the text and continues the text. Its
OPT variants are not instruction-tuned, so how the captioning prompt is phrased matters:

    "Question: {prompt} Answer:"   BLIP-2's prompted (VQA-style) format - the default, so the
                                   paper's "Describe this frame within 50 words" is asked as a
                                   question, as in the paper's generalist baselines (App. H.5)
    "{prompt}"                     the prompt as a plain text prefix
    ""                             no prompt: BLIP-2's own unconditional captioning (short,
                                   COCO-style captions; the configured prompt is not used)

Options (`captioner.options` in the YAML):
    prompt_template: one of the layouts above (any string; "{prompt}" is replaced by the prompt).
Frames are resized to the processor's square size (224 px for the released checkpoints; BLIP-2
squashes rather than crops). Batching, left padding and greedy decoding as for LLaVA-1.5.
"""
from __future__ import annotations

from videoqa.captioners.llava import TransformersCaptioner
from videoqa.errors import UserError
from videoqa.registry import CAPTIONERS

BLIP2_QA_TEMPLATE = "Question: {prompt} Answer:"


@CAPTIONERS.register("blip2")
class Blip2Captioner(TransformersCaptioner):
    """BLIP-2: EVA ViT-g + Q-Former + a frozen OPT or Flan-T5 language model."""

    kind = "blip2"
    what = "BLIP-2 captioner"
    example_model = "Salesforce/blip2-opt-2.7b"
    model_class = "Blip2ForConditionalGeneration"

    def _check_processor(self) -> None:
        from transformers import AddedToken

        processor, config = self.processor, self.model.config
        if processor.num_query_tokens is None or config.image_token_id is None:
            # snapshots from before the Q-Former outputs had placeholder tokens in the text: the
            # model would caption without looking at the image
            raise UserError(
                f"{self.resolved.path}: this BLIP-2 snapshot predates image placeholder tokens "
                f"(no num_query_tokens / image_token_index); fetch the current revision with "
                f"`hf download {self.resolved.ref}`"
            )
        if isinstance(processor.image_token, str):
            # Blip2Processor takes the tokenizer's `image_token` string as is but later needs an
            # AddedToken (`.content`); wrap it so tokenizers that declare the token work too
            processor.image_token = AddedToken(processor.image_token, normalized=False, special=True)
        token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token.content)
        if token_id != config.image_token_id:
            raise UserError(
                f"{self.resolved.path}: the tokenizer's image token {processor.image_token.content!r} has id "
                f"{token_id}, the model expects {config.image_token_id}"
            )

    def prompt_text(self, prompt: str) -> str:
        template = BLIP2_QA_TEMPLATE if self.prompt_template is None else self.prompt_template
        return template.replace("{prompt}", prompt)
