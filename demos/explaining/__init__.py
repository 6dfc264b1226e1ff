"""Explaining predictions: feature maps, Grad-CAM, attention rollout, class visualisation, attacks, model summaries."""
