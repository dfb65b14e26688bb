"""SHAP explanations of the global ranker (token- and field-level) and their faithfulness."""

from ecrec.explain.faithfulness import faithfulness_check, named_attributes
from ecrec.explain.fields import FieldExplanation, explain_fields, product_fields
from ecrec.explain.ranker_access import read_document
from ecrec.explain.render import RenderedExplanations, render_explanations
from ecrec.explain.run import ADDITIVITY_TOLERANCE, explain_run
from ecrec.explain.store import EXPLANATIONS_DIR, EXPLANATIONS_FILE, write_explanations
from ecrec.explain.tokens import DEFAULT_MAX_EVALS, TokenExplanation, explain_tokens

__all__ = [
    "ADDITIVITY_TOLERANCE",
    "DEFAULT_MAX_EVALS",
    "EXPLANATIONS_DIR",
    "EXPLANATIONS_FILE",
    "FieldExplanation",
    "RenderedExplanations",
    "TokenExplanation",
    "explain_fields",
    "explain_run",
    "explain_tokens",
    "faithfulness_check",
    "named_attributes",
    "product_fields",
    "read_document",
    "render_explanations",
    "write_explanations",
]
