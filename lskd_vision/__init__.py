"""lskd_vision: ImageNet, CUB-200-2011 and digits teachers and students on the shared KD core."""
