"""Base models: loading (folders, single files, hub ids only when asked), one Family per model family, samplers, tiny random pipelines. Imports errors, files and config only."""
