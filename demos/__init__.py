"""The Gradio demo: `python -m demos` (see demos/__main__.py); inference in demos/inference.py knows nothing of Gradio."""
