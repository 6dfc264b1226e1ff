"""What a user would build instead of our demo: a plain `gr.Interface` around `pipeline("image-classification")`.

    HF_HUB_OFFLINE=1 python -m bench.pipeline_app --model checkpoints/food10 --port 7870

The baseline of `bench.classify_e2e`; its endpoint is /classify, like the demo's, and answers the same top-5
label dictionary.
"""

from __future__ import annotations

import argparse

import gradio as gr
from transformers import pipeline

TOP_K = 5


def build_app(model: str) -> gr.Interface:
    classifier = pipeline("image-classification", model=model)

    def classify(image):
        return {p["label"]: p["score"] for p in classifier(image, top_k=TOP_K)}

    return gr.Interface(
        classify, gr.Image(type="pil"), gr.Label(num_top_classes=TOP_K), api_name="classify", flagging_mode="never"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a checkpoint folder or hub id")
    parser.add_argument("--port", type=int, default=7870)
    args = parser.parse_args()
    build_app(args.model).launch(server_port=args.port)


if __name__ == "__main__":
    main()
