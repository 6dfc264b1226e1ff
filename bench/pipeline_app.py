"""What a user would build instead of our demo: a plain `gr.Interface` around `pipeline("image-classification")`.

    HF_HUB_OFFLINE=1 python -m bench.pipeline_app --model checkpoints/food10 --port 7870
    python -m bench.pipeline_app --floor --port 7870
    HF_HUB_OFFLINE=1 python -m bench.pipeline_app --model checkpoints/food10 --batch 8 --port 7870

The baseline of `bench.classify_e2e`; its endpoint is /classify, like the demo's, and answers the same top-5
label dictionary. With --floor it runs no model: the photo is decoded and a fixed label answers, so that its
/classify time is what Gradio and gradio_client alone cost an image endpoint on this machine (bench.visitor). With
--batch N, Gradio's dynamic batching gathers up to N waiting requests into one pipeline call (bench.batching).
"""

from __future__ import annotations

import argparse

import gradio as gr
from transformers import pipeline

TOP_K = 5


def build_app(model: str | None, batch: int = 1) -> gr.Interface:
    """The Interface around `model`'s pipeline; None: around no model at all (the floor). `batch` > 1: Gradio
    batches up to that many waiting requests into one call."""
    classifier = None if model is None else pipeline("image-classification", model=model)

    def top_k(predictions: list[dict]) -> dict[str, float]:
        return {p["label"]: p["score"] for p in predictions}

    def classify(image):
        if classifier is None:
            return {"no model": 1.0}
        return top_k(classifier(image, top_k=TOP_K))

    def classify_batch(images: list):
        # One pipeline call for the whole batch: its images go through the model as one tensor.
        return [[top_k(p) for p in classifier(list(images), top_k=TOP_K, batch_size=len(images))]]

    batching = {"batch": True, "max_batch_size": batch} if batch > 1 else {}
    return gr.Interface(
        classify_batch if batching else classify,
        gr.Image(type="pil"),
        gr.Label(num_top_classes=TOP_K),
        api_name="classify",
        flagging_mode="never",
        **batching,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a checkpoint folder or hub id")
    which.add_argument("--floor", action="store_true", help="no model: a fixed answer (Gradio's own cost)")
    parser.add_argument("--batch", type=int, default=1, help="with --model: batch up to this many waiting requests")
    parser.add_argument("--port", type=int, default=7870)
    args = parser.parse_args()
    if args.batch > 1 and args.floor:
        parser.error("--batch needs --model: the floor runs no model to batch")
    build_app(args.model, args.batch).launch(server_port=args.port)


if __name__ == "__main__":
    main()
