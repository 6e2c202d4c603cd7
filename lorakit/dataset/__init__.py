"""A kohya-layout dataset: scan, import, checks, captions and captioners, crop and buckets, the latent cache. Imports lora, models, config, project and the shared modules."""
