"""Model files on this machine, shared by the captioning and answering stages.

resolve.py  an HF id (from the local cache only: nothing is downloaded) or a directory -> local
            files + a revision for the run manifest (`resolve_model`), cheap directory fingerprints
vlm.py      transformers vision-language checkpoints: inputs from (prompt, images), weights loading
"""
