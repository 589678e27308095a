"""The plugin's fairseq task: ``translation_kd`` (a live or cached teacher beside translation)."""
