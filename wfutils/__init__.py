"""wfutils: the logic behind wfbook, one subpackage per stage of the study.

* :mod:`wfutils.flows` — the flow format: vocabulary, JSON Schema, parsing model text, FlowSim;
* :mod:`wfutils.data` — the catalogue, the synthetic generator, the public corpora, a run's data and predictions;
* :mod:`wfutils.slm` — the fine-tuned arm; :mod:`wfutils.llm` — the prompted arm;
* :mod:`wfutils.evaluation` — scores, statistics, error taxonomy, the paper's claims;
* :mod:`wfutils.study` — profiles, the papermill pipeline, the book.

The metric's documented entry points are importable from here::

    from wfutils import flow_similarity, parse_flow, validate_flow
    flow_similarity(model_text_or_dict, reference_flow)                    # FlowSim with inputs
    flow_similarity(model_text_or_dict, reference_flow, with_inputs=False)  # structure only
"""

import warnings

from wfutils.flows.flowsim import component_match, corpus_flow_similarity, edit_operations, flow_similarity, trigger_match
from wfutils.flows.parsing import parse_flow
from wfutils.flows.schema import validate_flow

# Libraries we call import tqdm.auto, which warns inside notebooks without ipywidgets and then
# falls back to the text bars we want in executed notebooks and the rendered book.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
__all__ = ["component_match", "corpus_flow_similarity", "edit_operations", "flow_similarity", "parse_flow",
           "trigger_match", "validate_flow"]
