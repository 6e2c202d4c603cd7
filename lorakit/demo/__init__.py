"""The demo's toy world: scenes, the scorer, the demo recipe and the `lorakit demo` run. May import every stage (train, evaluate, ...); nothing below imports it."""
