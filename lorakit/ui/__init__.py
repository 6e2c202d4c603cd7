"""ipywidgets forms and live views for the notebooks, one module per notebook, no logic the library lacks; may import anything in lorakit, and nothing else in lorakit imports it."""
