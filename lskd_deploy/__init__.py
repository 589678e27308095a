"""Deploying a trained translation model: CTranslate2 export (``lskd-export-ct2``) and translation through the
exported folder (``lskd-evaluate --engine ctranslate2``, ``bench/deploy.py``). See docs/deploy.md."""
