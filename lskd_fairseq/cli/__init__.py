"""The plugin's console scripts: ``lskd-dump-teacher`` and ``lskd-fairseq-diffusion``."""
