"""The training config: TrainConfig (the schema, every setting's help text once), presets, kohya_ss and sd-scripts import and export, sample prompts. Imports only errors and files."""
