"""ipywidgets forms and live views for the notebooks: one module per notebook, no logic the library lacks."""
