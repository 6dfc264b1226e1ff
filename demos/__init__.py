"""The Gradio demo: `python -m demos` (see demos/__main__.py).

- app.py composes the tabs; models.py is the app's model set, the one thing every tab is given;
- serving/: predictions and what they need (decoding uploads, visitors' models, users' corrections);
- explaining/: feature maps, Grad-CAM, attention rollout, class visualisation, attacks, model summaries;
- tabs/: one module per tab, the only Gradio code besides app.py;
- guards/: what keeps a public link usable by strangers (uploads, queue and upload limits, refusals, priority).

serving/ and explaining/ know nothing of Gradio.
"""

import logging
import sys

# torch.compile's inductor imports Triton, a GPU kernel compiler, wherever it is installed (torch's CUDA wheels ship
# it), though the demo computes on the CPU only: Triton's library alone stayed ~80 MB resident. Marked absent before
# torch is imported, as in a CPU-only install of torch (measured: 1094 -> 1011 MiB once food10 is compiled). A process
# that has imported Triton already keeps it.
sys.modules.setdefault("triton", None)
# torch's FLOP counter, which inductor imports, would then warn at every compile that Triton is missing.
logging.getLogger("torch.utils.flop_counter").addFilter(lambda record: "triton not found" not in record.getMessage())
