"""The plugin's fairseq criteria: ``label_smoothed_teacher`` and ``word_kd``."""
