"""The public-demo guards: what a visitor may send, queue, upload and be told."""
