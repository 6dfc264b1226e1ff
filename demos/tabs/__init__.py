"""One module per tab; each exposes `TITLE` and `render(models)`, composed by demos/app.py's `TABS`."""
