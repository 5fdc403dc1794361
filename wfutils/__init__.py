"""wfutils: the logic behind wfbook (flow schema, FlowSim, data, prompting, fine-tuning, scoring)."""

import warnings

# Libraries we call import tqdm.auto, which warns inside notebooks without ipywidgets and then
# falls back to the text bars we want in executed notebooks and the rendered book.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
