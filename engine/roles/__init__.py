"""What both backends share: prompts, chat format, verdict and calibration, care phrases, the guard, history
trimming and language. Nothing here needs torch."""
