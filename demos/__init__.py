"""The Gradio demo: `python -m demos` (see demos/__main__.py).

Inference in demos/inference.py knows nothing of Gradio.
"""
