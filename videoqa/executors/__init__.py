"""Executors: where the run object's stages run. The run object (videoqa.run.VideoQA) decides what
needs doing; an executor does it - in this process (`local`, the default) or spread over a cluster.
The run object finds its executor by name (videoqa.registry.get_executor).

An executor has two methods, both called with the same arguments whatever the executor:
    caption_videos(config, captioner, videos, known_failures, on_failure, progress) -> CaptionResult
    load_backend(llm_config) -> LLMBackend        (the answering stage's LLM)
"""
