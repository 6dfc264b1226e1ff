"""The Gradio demo: `python -m demos` (see demos/__main__.py).

- app.py composes the tabs; models.py is the app's model set, the one thing every tab is given;
- serving/: predictions and what they need (decoding uploads, visitors' models, users' corrections);
- explaining/: feature maps, Grad-CAM, attention rollout, class visualisation, attacks, model summaries;
- tabs/: one module per tab, the only Gradio code besides app.py;
- guards/: what keeps a public link usable by strangers (uploads, queue and upload limits, refusals, priority).

serving/ and explaining/ know nothing of Gradio.
"""
