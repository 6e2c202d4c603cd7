"""The LoRA itself: the network (peft), kohya key names, the LoRA file and its ss_* metadata, weight patching, <lora:...> prompt tags. Imports models, config and the shared modules."""
