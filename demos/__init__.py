"""The Gradio demo: `python -m demos` (see demos/__main__.py).

Predictions (demos/inference.py) and their explanations (demos/explain.py, demos/layers.py) know nothing of Gradio.
"""
